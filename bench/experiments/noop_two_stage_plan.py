"""Experiment 4: two-stage plan: a one-sentence plan first (greedy, same prompt prefix), then the usual edit with the plan after the instruction."""
import json, sys, time
from pathlib import Path
from engine import quality
from engine.bench import load_items
from engine.client import prompts
from engine.completion import Completion
from engine.local_engine import Engine

ASK = "\n\nBefore editing: say in one sentence which lines you will change and how."
engine = Engine.load()
items = load_items(Path(sys.argv[1]), None, None, spread=int(sys.argv[2]))
if len(sys.argv) > 3 and sys.argv[3] == "readme":
    text = Path("docs/examples/inventory.py").read_text()
    items.append({"id": "readme/inventory.py", "path": "docs/examples/inventory.py", "instruction": "add type hints and docstrings", "before": text})
if len(sys.argv) > 3 and sys.argv[3].startswith("ids="):
    keep = set(sys.argv[3][4:].split(","))
    items = [i for i in load_items(Path(sys.argv[1]), None, None) if i["id"] in keep]
for item in items:
    engine.forget()
    t = time.perf_counter()
    p = prompts.build(item["before"], item["instruction"], item["path"])
    msgs = [dict(m) for m in p.messages]
    msgs[1]["content"] = msgs[1]["content"].rsplit("\n\nReply with", 1)[0] + ASK
    *_, c = engine.complete(Completion(job_id="plan", messages=msgs, max_tokens=80, stop=("\n",)))
    plan_s = time.perf_counter() - t
    plan = c.text.strip()
    *_, r = engine.edit(item["before"], item["instruction"].strip() + "\nPlan: " + plan, path=item["path"])
    q = quality.assess(item, r.text)
    print(json.dumps({"id": item["id"], "s": round(time.perf_counter() - t, 1), "plan_s": round(plan_s, 1), "plan": plan,
                      "unchanged": q.unchanged, "removed": q.removed, "parses": q.parses, "tests_pass": q.tests_pass,
                      "finish": r.finish_reason}), flush=True)
