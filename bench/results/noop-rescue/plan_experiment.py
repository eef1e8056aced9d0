"""Experiment 2: on the no-op items, does asking the model to say first what it will change cut no-ops?"""
import json, sys, time, difflib
from pathlib import Path
from engine import quality
from engine.client import prompts
from engine.completion import Completion
from engine.local_engine import Engine
from engine.client.remote import ReplyReader

rows = [json.loads(l) for l in open(sys.argv[1])]
ids = {r["id"] for r in rows if r["unchanged"]} | {"psf/requests@5a69137ac8:requests/auth.py", "psf/requests@845e8f943f:requests/auth.py"}
items = [json.loads(l) for l in open("bench/data/edits-requests.jsonl")]
items = [i for i in items if i["id"] in ids]
engine = Engine.load()
VARIANTS = {
  "plan-first": ("\n\nFirst say in one sentence which lines you will change and how; then reply with the whole edited file.", ""),
  "plan-first-prefixed": ("\n\nFirst say in one sentence which lines you will change and how; then reply with the whole edited file.", "I will change"),
}
for item in items:
    p = prompts.build(item["before"], item["instruction"], item["path"])
    for name, (extra, prefix) in VARIANTS.items():
        msgs = [dict(m) for m in p.messages]
        msgs[1]["content"] += extra
        if prefix:
            msgs.append({"role": "assistant", "content": prefix})
        engine.forget()
        t = time.perf_counter()
        ntok = len(engine.tokenizer(item["before"])["input_ids"])
        *_, c = engine.complete(Completion(job_id="p", messages=msgs, max_tokens=ntok + 400))
        reader = ReplyReader(p)
        reader.feed(c.text + "\n")
        text = reader.result(complete=True)
        q = quality.assess(item, text)
        diff = "".join(difflib.unified_diff(item["before"].splitlines(True), text.splitlines(True), n=0))
        row = {"id": item["id"], "variant": name, "s": round(time.perf_counter() - t, 1), "unchanged": q.unchanged,
               "removed": q.removed, "parses": q.parses, "finish": c.finish_reason, "head": c.text[:300], "diff": diff[:3000]}
        print(json.dumps(row), flush=True)
