"""Time to first token and chars/s of whole-file edits through any OpenAI-compatible
server (vLLM, SGLang, llama.cpp's server), by the path the editors use: engine/client/remote.py's
RemoteEngineClient, the same prompt, greedy, streamed. Torch-free: runs on a laptop.

    BLAZEDIT_API_KEY=... python bench/remote_latency.py openai:http://gpu-box:8000/v1 \\
        [--model NAME] [--dataset bench/data/edits-humanevalfix.jsonl] [--limit N | --spread N] \\
        [--concurrency C] [--max-new-tokens N] [--out results.jsonl]

Per edit: ttft_s (request to first token: queueing + prefill), seconds, chars/s (the
file's characters over the whole edit, as `blazedit bench` counts them), finish reason,
and whether the result equals the dataset's `after` (a sanity signal, not a score).
``--concurrency`` runs that many edits at once (a team's load on replicas or a
tensor-parallel server). The summary goes to stdout; one JSON line per edit to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from engine.client import protocol
from engine.client.errors import EngineUnavailable
from engine.client.remote import RemoteEngineClient


def load(path: Path, limit: int | None, spread: int | None) -> list[dict]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if spread:  # evenly over the copy ratios, as `blazedit bench --spread`
        ranked = sorted(items, key=lambda item: item.get("copy_ratio", 0.0))
        count = min(spread, len(ranked))
        return [ranked[round(n * (len(ranked) - 1) / max(count - 1, 1))] for n in range(count)]
    return items[:limit] if limit else items


async def one(client: RemoteEngineClient, item: dict, max_new_tokens: int | None) -> dict:
    edit = protocol.Edit(job_id=item["id"], text=item["before"], instruction=item["instruction"],
                         path=item.get("path", ""), options=protocol.DecodingOptions(max_new_tokens=max_new_tokens))
    start, ttft, record = time.perf_counter(), None, {"id": item["id"], "chars": len(item["before"])}
    async for message in client.edit(edit):
        if isinstance(message, protocol.Started) and ttft is None:
            ttft = time.perf_counter() - start
        elif isinstance(message, protocol.Done):
            seconds = time.perf_counter() - start
            return {**record, "ttft_s": round(ttft or seconds, 4), "seconds": round(seconds, 4),
                    "chars_per_second": round(len(message.text) / seconds, 2), "tokens": message.stats.tokens,
                    "finish_reason": message.finish_reason, "equals_after": message.text == item.get("after")}
        elif isinstance(message, protocol.Error):
            return {**record, "error": f"{message.code}: {message.message}"}
    return {**record, "error": "no result"}


async def measure(url: str, model: str | None, items: list[dict], concurrency: int,
                  max_new_tokens: int | None) -> list[dict]:
    async with RemoteEngineClient(url, model=model, client_name="blazedit-bench") as client:
        gate = asyncio.Semaphore(concurrency)

        async def gated(item: dict) -> dict:
            async with gate:
                record = await one(client, item, max_new_tokens)
                print(json.dumps(record), file=sys.stderr)
                return record

        return await asyncio.gather(*(gated(item) for item in items))


def summary(records: list[dict]) -> str:
    ok = [r for r in records if "error" not in r]
    if not ok:
        return f"0 of {len(records)} edits finished"
    speeds = sorted(r["chars_per_second"] for r in ok)
    ttfts = sorted(r["ttft_s"] for r in ok)
    slow = speeds[int(0.1 * (len(speeds) - 1))]  # the slow tail: 10th percentile of chars/s
    return (f"{len(ok)} of {len(records)} edits finished ({sum(r['equals_after'] for r in ok)} equal the dataset's "
            f"`after`)\n  chars/s: mean {statistics.fmean(speeds):.1f}, p50 {statistics.median(speeds):.1f}, "
            f"p10 {slow:.1f}\n  time to first token: p50 {statistics.median(ttfts):.3f} s, "
            f"max {ttfts[-1]:.3f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="openai:http://HOST:PORT/v1")
    parser.add_argument("--model", help="the served model's name (default: the first the server lists)")
    parser.add_argument("--dataset", type=Path, default=Path(__file__).parent / "data" / "edits-humanevalfix.jsonl")
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--limit", type=int, help="the first N items")
    subset.add_argument("--spread", type=int, help="N items spread over the copy ratios")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--out", type=Path, help="one JSON line per edit")
    args = parser.parse_args(argv)
    items = load(args.dataset, args.limit, args.spread)
    try:
        records = asyncio.run(measure(args.url, args.model, items, args.concurrency, args.max_new_tokens))
    except EngineUnavailable as exc:
        print(f"remote_latency: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(summary(records))
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
