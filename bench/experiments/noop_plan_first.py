"""Experiments 2 and 3 of bench/results/noop-rescue: the model first says in one sentence what
it will change, then writes the file in its own fence.

  noops FOLLOWUP_JSONL      on the no-op items of experiment 1's output (and two known ones),
                            two variants (plain, and the reply pre-opened with "I will change")
  sample DATASET N [readme] on N items spread over the dataset's copy ratios (and the README's example)
"""
import difflib
import json
import sys
import time
from pathlib import Path

from engine import quality
from engine.bench import load_items
from engine.client import prompts
from engine.client.prompts import ReplyReader
from engine.completion import Completion
from engine.local_engine import Engine

EXTRA = "\n\nFirst say in one sentence which lines you will change and how; then reply with the whole edited file."
KNOWN_NOOPS = {"psf/requests@5a69137ac8:requests/auth.py", "psf/requests@845e8f943f:requests/auth.py"}


def noop_items(followup: str) -> list[dict]:
    rows = [json.loads(line) for line in open(followup)]
    ids = {r["id"] for r in rows if r["unchanged"]} | KNOWN_NOOPS
    return [i for i in map(json.loads, open("bench/data/edits-requests.jsonl")) if i["id"] in ids]


def sample_items(dataset: str, spread: str, readme: bool) -> list[dict]:
    items = load_items(Path(dataset), None, None, spread=int(spread))
    if readme:
        text = Path("docs/examples/inventory.py").read_text()
        items.append({"id": "readme/inventory.py", "path": "docs/examples/inventory.py",
                      "instruction": "add type hints and docstrings", "before": text})
    return items


def plan_first(engine: Engine, item: dict, prefix: str, max_tokens: int):
    """The reply to the plan-first prompt (pre-opened with ``prefix``), and the file read from it."""
    p = prompts.build(item["before"], item["instruction"], item["path"])
    msgs = [dict(m) for m in p.messages]
    msgs[1]["content"] += EXTRA
    if prefix:
        msgs.append({"role": "assistant", "content": prefix})
    *_, c = engine.complete(Completion(job_id="p", messages=msgs, max_tokens=max_tokens))
    reader = ReplyReader(p)
    reader.feed(c.text + "\n")
    return c, reader.result(complete=True)


def main(mode: str, *args: str) -> None:
    engine = Engine.load()
    noops = mode == "noops"
    items = noop_items(*args) if noops else sample_items(args[0], args[1], len(args) > 2)
    variants = {"plan-first": "", "plan-first-prefixed": "I will change"} if noops else {"plan-first": ""}
    for item in items:
        for name, prefix in variants.items():
            engine.forget()
            t = time.perf_counter()
            ntok = len(engine.tokenizer(item["before"])["input_ids"])
            c, text = plan_first(engine, item, prefix, ntok + 400 if noops else 2 * ntok + 400)
            q = quality.assess(item, text)
            row = {"id": item["id"], "variant": name, "s": round(time.perf_counter() - t, 1),
                   "first_token_s": round(c.stats.first_token_seconds, 2), "unchanged": q.unchanged,
                   "removed": q.removed, "parses": q.parses, "tests_pass": q.tests_pass, "finish": c.finish_reason}
            if noops:
                diff = difflib.unified_diff(item["before"].splitlines(True), text.splitlines(True), n=0)
                row |= {"head": c.text[:300], "diff": "".join(diff)[:3000]}
            else:
                row["head"] = c.text[:200]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
