"""Latency the user feels: how long until the buffer first changes (issue 20).

For each item, on one loaded engine, side by side:
- ``cold``: an edit with empty caches; the buffer changes only at the end (the old way),
  or at the first settled hunk when hunks are applied while streaming;
- ``warmed``: the same edit after ``Engine.warm`` prefilled "system + file" (what the
  language server asks for when the file is opened), caches otherwise empty.
Reported per run: the attempts (a second after an unchanged reply, one more for an apply
pass), the first attempt's first token, the first settled hunk (blazedit_lsp.edits.settled on
the streamed text, the rule the language server applies while streaming), the final end, and
whether the reply was part of the file (``partial``: merged, or apply_pass).

    python bench/latency.py bench/data/edits-requests.jsonl [--spread N] [--out bench/results/latency]
"""

import argparse
import json
import time
from pathlib import Path

from blazedit_lsp.edits import settled
from engine.bench import by_size, evenly
from engine.local_engine import Engine, Result


def timed(engine: Engine, item: dict) -> dict:
    """One edit, in seconds from the request: the first attempt's first token, the first
    settled hunk (of the attempt that wrote the result), the end of the last attempt;
    how many attempts it took and whether its reply was part of the file (merged, or
    rewritten by an apply pass)."""
    start = time.perf_counter()
    streamed, first_hunk, first = "", None, None
    for event in engine.edit(item["before"], item["instruction"], path=item["path"]):
        if isinstance(event, Result):
            end = time.perf_counter() - start
            result = event
            break
        if event.attempt == 1:
            first = event.stats
        elif not event.text and not event.chars:  # a new attempt streams the file anew
            streamed, first_hunk = "", None
        streamed += event.text
        if first_hunk is None and "\n" in event.text and settled(item["before"], streamed)[1]:
            first_hunk = time.perf_counter() - start
    first = result.stats if result.attempt == 1 else first
    return {"attempts": result.attempt, "first_token_s": round(first.first_token_seconds, 2),
            "first_hunk_s": None if first_hunk is None else round(first_hunk, 2), "end_s": round(end, 2),
            "partial": result.partial.how if result.partial else None,
            "merged": result.partial.items if result.partial else [],
            "cached_tokens": result.stats.cached_tokens, "prompt_tokens": result.stats.prompt_tokens,
            "tokens": result.stats.tokens, "changed": result.text != item["before"], "text": result.text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--spread", type=int, default=3, help="items evenly spread over the file sizes")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "llama.cpp"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write results.jsonl and results.md here")
    args = parser.parse_args()
    items = evenly([json.loads(line) for line in open(args.dataset)], args.spread, key=by_size)
    engine = Engine.load(runtime=args.runtime, threads=args.threads)
    rows = []
    for item in items:
        for run in ("cold", "warmed"):
            engine.forget()
            warm_s = None
            if run == "warmed":
                t = time.perf_counter()
                engine.warm(item["before"], path=item["path"])
                warm_s = round(time.perf_counter() - t, 2)
            row = {"id": item["id"], "chars": len(item["before"]), "run": run, "warm_s": warm_s,
                   "runtime": engine.target.runtime, **timed(engine, item)}
            del row["text"]  # (results record timings, not outputs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        lines = ["| item | chars | run | warm (s, before the request) | attempts | first token, first attempt (s) | "
                 "first settled hunk (s) | end (s) | partial reply | cached tokens |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['chars']} | {r['run']} | {r['warm_s'] if r['warm_s'] is not None else '-'} | "
                  f"{r['attempts']} | {r['first_token_s']} | "
                  f"{r['first_hunk_s'] if r['first_hunk_s'] is not None else 'none'} | {r['end_s']} | "
                  f"{r['partial'] or 'no'} | {r['cached_tokens']} / {r['prompt_tokens']} |" for r in rows]
        (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
