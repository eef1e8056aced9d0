"""Experiment 3: plan-first on whole dev-set samples (quality + time)."""
import json, sys, time
from pathlib import Path
from engine import quality
from engine.client import prompts
from engine.bench import load_items
from engine.completion import Completion
from engine.local_engine import Engine
from engine.client.remote import ReplyReader

EXTRA = "\n\nFirst say in one sentence which lines you will change and how; then reply with the whole edited file."
engine = Engine.load()
items = load_items(Path(sys.argv[1]), None, None, spread=int(sys.argv[2]))
if len(sys.argv) > 3:
    text = Path("docs/examples/inventory.py").read_text()
    items.append({"id": "readme/inventory.py", "path": "docs/examples/inventory.py", "instruction": "add type hints and docstrings", "before": text})
for item in items:
    p = prompts.build(item["before"], item["instruction"], item["path"])
    msgs = [dict(m) for m in p.messages]
    msgs[1]["content"] += EXTRA
    engine.forget()
    t = time.perf_counter()
    ntok = len(engine.tokenizer(item["before"])["input_ids"])
    *_, c = engine.complete(Completion(job_id="p", messages=msgs, max_tokens=2 * ntok + 400))
    reader = ReplyReader(p)
    reader.feed(c.text + "\n")
    text = reader.result(complete=True)
    q = quality.assess(item, text)
    print(json.dumps({"id": item["id"], "s": round(time.perf_counter() - t, 1), "first_token_s": round(c.stats.first_token_seconds, 2),
                      "unchanged": q.unchanged, "removed": q.removed, "parses": q.parses, "tests_pass": q.tests_pass,
                      "finish": c.finish_reason, "head": c.text[:200]}), flush=True)
