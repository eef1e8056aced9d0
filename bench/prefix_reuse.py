"""How much the prefix cache saves on a second edit of the same file (issue 4's figure).

Runs, on one loaded engine: a cold edit, a second edit of the same file with another
instruction, and an edit of the file with one line changed in the middle; each with a
short output (``--max-new-tokens``), so the time measured is mostly prefill.

    python bench/prefix_reuse.py bench/data/edits-requests.jsonl ITEM_ID [--runtime R] [--threads N]
"""

import argparse
import json
import time

from engine.client.protocol import DecodingOptions
from engine.local_engine import Engine


def timed_edit(engine, text, instruction, path, options):
    start = time.perf_counter()
    *_, result = engine.edit(text, instruction, path=path, method="blazedit", options=options)
    return time.perf_counter() - start, result.stats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("item")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "llama.cpp"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    item = next(json.loads(line) for line in open(args.dataset) if json.loads(line)["id"] == args.item)
    engine = Engine.load(runtime=args.runtime, threads=args.threads)
    options = DecodingOptions(max_new_tokens=args.max_new_tokens)
    lines = item["before"].splitlines(keepends=True)
    middle = len(lines) // 2
    changed = "".join(lines[:middle] + ["# a line the user added\n"] + lines[middle:])
    runs = [
        ("cold", item["before"], item["instruction"]),
        ("same file, new instruction", item["before"], "add docstrings to every function"),
        ("one line inserted mid-file", changed, item["instruction"]),
    ]
    rows = []
    for name, text, instruction in runs:
        seconds, stats = timed_edit(engine, text, instruction, item["path"], options)
        rows.append({"run": name, "runtime": engine.target.runtime, "seconds": round(seconds, 2), "prompt_tokens": stats.prompt_tokens,
                     "cached_tokens": stats.cached_tokens, "first_token_seconds": round(stats.first_token_seconds, 2)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
