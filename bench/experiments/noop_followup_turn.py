"""Experiment: does a follow-up turn ("you returned it unchanged; make the change") cut no-ops?"""
import json, sys, time
from engine import quality
from engine.bench import load_items
from engine.client import prompts
from engine.completion import Completion
from engine.local_engine import Engine

NUDGES = {
 "unchanged-turn": "Your reply is the file unchanged, but the instruction asks for a change: {instruction}\n\nMake that change now. Reply with the whole edited file in one {fence}{lang} code block.",
}
from pathlib import Path
items = load_items(Path(sys.argv[1]), None, None, spread=int(sys.argv[2]))
engine = Engine.load()
out = open(sys.argv[3], "w")
for item in items:
    engine.forget()
    t = time.perf_counter()
    *_, r = engine.edit(item["before"], item["instruction"], path=item["path"])
    first_s = time.perf_counter() - t
    q = quality.assess(item, r.text)
    row = {"id": item["id"], "instruction": item["instruction"], "chars": len(item["before"]), "first_s": round(first_s, 1),
           "unchanged": q.unchanged, "removed": q.removed, "parses": q.parses}
    if q.unchanged:
        p = prompts.build(item["before"], item["instruction"], item["path"])
        lang = p.reply_prefix[len(p.fence):].strip()
        body = item["before"].replace("\r\n", "\n").rstrip("\n")
        for name, nudge in NUDGES.items():
            msgs = p.messages + [{"role": "assistant", "content": f"{p.reply_prefix}{body}\n{p.fence}"},
                                 {"role": "user", "content": nudge.format(instruction=item["instruction"].strip(), fence=p.fence, lang=lang)},
                                 {"role": "assistant", "content": p.reply_prefix}]
            t = time.perf_counter()
            *_, c = engine.complete(Completion(job_id="n", messages=msgs, prediction=body, stop=("\n" + p.fence,)))
            text = p.file_from_reply(c.text + "\n" + p.fence)
            q2 = quality.assess(item, text)
            import difflib
            diff = "".join(difflib.unified_diff(item["before"].splitlines(True), text.splitlines(True), n=0))
            row[name] = {"s": round(time.perf_counter() - t, 1), "unchanged": q2.unchanged, "removed": q2.removed,
                         "parses": q2.parses, "finish": c.finish_reason, "diff": diff[:3000]}
    print(json.dumps(row), flush=True)
    out.write(json.dumps(row) + "\n"); out.flush()
