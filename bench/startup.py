"""How long README command 1 takes to start editing: the time from the process start to the
`-v` log's "editing" line (the issue's "at most 10 s with warm caches"), to the second
target's load and the move where the edit moves, and to the end; runs alternate between the
checkouts given (A B A B ...), each with the one venv's packages and its own sources.

    python bench/startup.py --runs 3 OLD_CHECKOUT . > bench/results/startup/NAME.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COMMAND = ["edit", "docs/examples/inventory.py", "-i", "add type hints and docstrings", "--json", "-v"]
MARKS = {"editing": "editing ", "loaded second target": "loaded the second target", "moved": "moved to the second"}


def run(checkout: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))  # this checkout's sources before the installed ones
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", "from engine.cli import main; main()", *COMMAND],
                               cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    for line in process.stderr:
        for name, text in MARKS.items():
            if text in line and name not in marks:
                marks[name] = round(time.perf_counter() - start, 2)
    reply = json.loads(process.stdout.read())
    process.wait()
    return {"checkout": str(checkout), "seconds_to": marks, "total_seconds": round(time.perf_counter() - start, 2),
            "tokens": reply["tokens"], "handover_tokens": reply["handover_tokens"],
            "text_sha256": hashlib.sha256(reply["text"].encode()).hexdigest()[:12]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        for checkout in args.checkouts:
            print(json.dumps(run(checkout.resolve())), flush=True)


if __name__ == "__main__":
    main()
