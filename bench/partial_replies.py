"""What happens to partial replies with the product's default settings (issue 33).

Each item is edited once, cold, as `blazedit edit` would (``Engine.load()`` defaults, the
second attempt after an unchanged reply and the apply pass on): how many attempts, whether
the final reply was partial (merged by item, or rewritten by an apply pass) and which items
were merged, the time to the end, whether the result parses, the top-level statements it
drops that the instruction does not name (the guard: each is told to the user), and a
module-level smoke check: where the original file runs as a module in a fresh interpreter
(its imports installed), does the result too?

    python bench/partial_replies.py bench/data/edits-flask.jsonl [--limit N] [--out bench/results/partial-flask]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from latency import timed  # bench/latency.py: attempts, first token, end, partial

from engine.client import guard
from engine.local_engine import Engine

SMOKE_TIMEOUT_S = 30.0


def runs_as_module(source: str) -> bool:
    """Execute the file as ``__main__``'s import would (``runpy``) in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "module_under_test.py"
        path.write_text(source)
        try:
            done = subprocess.run([sys.executable, "-c", "import module_under_test"], cwd=tmp, capture_output=True,
                                  timeout=SMOKE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write results.jsonl and results.md here")
    args = parser.parse_args()
    items = [json.loads(line) for line in args.dataset.read_text().splitlines() if line.strip()][:args.limit]
    engine = Engine.load()
    rows = []
    for item in items:
        engine.forget()
        row = {"id": item["id"], "chars": len(item["before"]), **timed(engine, item)}
        text = row.pop("text")
        row["parses"] = guard.parses(text, item["path"])
        row["dropped"] = [str(r.definition) for r in guard.removed_definitions(item["before"], text,
                                                                               item["instruction"], item["path"])]
        original_runs = runs_as_module(item["before"])
        row["smoke"] = runs_as_module(text) if original_runs else None  # None: the original does not run either
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        partial = [r for r in rows if r["partial"]]
        lines = [f"Command: `python {' '.join(sys.argv)}`", "",
                 f"{len(rows)} edits; {sum(r['attempts'] > 1 for r in rows)} took more than one attempt; "
                 f"{len(partial)} final replies were partial ({sum(r['partial'] == 'merged' for r in rows)} merged "
                 f"by item, {sum(r['partial'] == 'apply_pass' for r in rows)} by an apply pass); "
                 f"{sum(bool(r['parses']) for r in rows)} results parse; "
                 f"{sum(bool(r['dropped']) for r in rows)} drop a top-level statement (each told to the user); "
                 f"smoke check: {sum(r['smoke'] is True for r in rows)} of {sum(r['smoke'] is not None for r in rows)} "
                 "whose original runs.", "",
                 "| item | chars | attempts | partial | merged | end (s) | parses | dropped (told) | smoke |",
                 "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['chars']} | {r['attempts']} | {r['partial'] or 'no'} | "
                  f"{', '.join(r['merged']) or '-'} | {r['end_s']} | {r['parses']} | {', '.join(r['dropped']) or '-'} | "
                  f"{'-' if r['smoke'] is None else r['smoke']} |" for r in rows]
        (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
