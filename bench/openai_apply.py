"""A whole-file apply through `blazedit engine serve --openai`, side by side with the
native protocol, with and without Predicted Outputs (issue 23).

One real daemon (the default pair unless --model), serving its socket and the OpenAI
API; for each item, in a rotating order:
- ``native``: the daemon's Edit (what `blazedit edit` and the language server send);
- ``openai+prediction``: the same prompt as chat messages (the reply pre-opened with its
  fence, stopped at the closing one), ``prediction`` = the file, through the `openai` SDK;
- ``openai``: the same request without ``prediction``;
- ``greedy`` (with ``--greedy``): the native Edit decoded by plain greedy decoding (method
  ``regular``: no lookup, no draft), the speed of a server that copies nothing.
Before each item the daemon warms "system + file" (a Warm, waited for), so every run
starts from the same cached prefix (each run also files its own prompt: the later runs
of an item reuse a few more tokens; cached tokens are recorded, and the order rotates).

    python bench/openai_apply.py bench/data/edits-requests.jsonl --spread 4 [--repeat 2] [--greedy] [--out DIR]
    python bench/openai_apply.py DATASET --out DIR --summarize   # results.md again from DIR/results.jsonl

Per run: wall seconds (request to the whole answer), tokens, target forward passes,
cached prompt tokens, and for the OpenAI runs accepted / rejected prediction tokens
(a prediction's share of the reply is accepted / (accepted + rejected)). The summary
compares each item's runs (ratios of wall times, one run's numbers against the same
item's other runs), over all items and over those whose reply copies >= 90% of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

from engine.bench import by_size, evenly
from engine.client import prompts, protocol
from engine.client.daemon_client import EngineClient

RUNS = ("native", "openai+prediction", "openai", "greedy")
COPY_HEAVY = 0.9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def native(client: EngineClient, item: dict, job_id: str, method: protocol.Method = "blazedit") -> dict:
    edit = protocol.Edit(job_id=job_id, text=item["before"], instruction=item["instruction"], path=item["path"],
                         method=method, retry_unchanged=False)  # one attempt, as the OpenAI requests
    start = time.perf_counter()
    async for message in client.edit(edit):
        if isinstance(message, protocol.Done):
            return {"seconds": time.perf_counter() - start, "text": message.text, "tokens": message.stats.tokens,
                    "target_passes": message.stats.target_forward_passes,
                    "cached_tokens": message.stats.cached_tokens, "finish_reason": message.finish_reason}
        if isinstance(message, protocol.Error):
            raise RuntimeError(f"{message.code}: {message.message}")
    raise RuntimeError("no result")


def chat(sdk: openai.OpenAI, model: str, item: dict, predict: bool) -> dict:
    prompt = prompts.build(item["before"], item["instruction"], item["path"])
    messages = prompt.messages + [{"role": "assistant", "content": prompt.reply_prefix}]
    extra = {"prediction": {"type": "content", "content": item["before"]}} if predict else {}
    start = time.perf_counter()
    answer = sdk.chat.completions.create(model=model, messages=messages, stop=["\n" + prompt.fence], **extra)
    seconds = time.perf_counter() - start
    choice, usage = answer.choices[0], answer.usage
    details = usage.completion_tokens_details
    reply = choice.message.content + ("\n" + prompt.fence if choice.finish_reason == "stop" else "")  # the stop string
    return {"seconds": seconds, "text": prompt.file_from_reply(reply),
            "tokens": usage.completion_tokens, "cached_tokens": usage.prompt_tokens_details.cached_tokens,
            "finish_reason": choice.finish_reason,
            "accepted_prediction_tokens": details.accepted_prediction_tokens if details else None,
            "rejected_prediction_tokens": details.rejected_prediction_tokens if details else None}


async def warm(client: EngineClient, item: dict) -> None:
    """Prefill "system + file" and wait until the daemon has done it."""
    before = (await client.status()).warms_done
    await client.warm(item["before"], path=item["path"], document=item["id"])
    deadline = time.monotonic() + 600
    while (await client.status()).warms_done == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the warm of {item['id']} did not finish in 600 s")
        await asyncio.sleep(0.2)


async def measure(workdir: Path, model_args: list[str], items: list[dict], repeat: int,
                  runs: tuple[str, ...]) -> list[dict]:
    """Start the daemon (as an editor would: spawned on the first connection, here with
    the OpenAI API on a free port), run the items, stop it."""
    port, rows = free_port(), []
    client = EngineClient(str(workdir / "engine.sock"), spawn=True, spawn_timeout=600,
                          serve_args=["--openai", str(port), *model_args], client_name="blazedit-bench")
    try:
        await client.connect()
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0,
                           timeout=3600) as sdk:
            model = sdk.models.list().data[0].id
            for round_ in range(repeat):
                for n, item in enumerate(items):
                    await warm(client, item)
                    shift = (n + round_) % len(runs)
                    for run in runs[shift:] + runs[:shift]:
                        if run in ("native", "greedy"):
                            result = await native(client, item, f"bench-{round_}-{n}-{run}",
                                                  "regular" if run == "greedy" else "blazedit")
                        else:
                            result = await asyncio.to_thread(chat, sdk, model, item, run == "openai+prediction")
                        text = result.pop("text")
                        row = {"id": item["id"], "chars": len(item["before"]), "round": round_, "run": run,
                               "model": model, **result, "seconds": round(result["seconds"], 3),
                               "changed": text != item["before"], "text_sha": hash_text(text)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    finally:
        await client.shutdown()
        await client.close()
    return rows


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def summary(rows: list[dict]) -> str:
    """Per item and round: openai+prediction / native and openai / openai+prediction, as
    medians over all items and over the copy-heavy ones (the prediction's accepted share)."""
    by = {}
    for row in rows:
        by.setdefault((row["id"], row["round"]), {})[row["run"]] = row
    runs = [run for run in RUNS if any(row["run"] == run for row in rows)]
    greedy = "greedy" in runs
    groups = [g for g in by.values() if len(g) == len(runs)]
    lines = ["| item | round | chars | native (s) | openai+prediction (s) | openai (s) | " + ("greedy (s) | " * greedy)
             + "prediction accepted | +prediction / native | without / with prediction | "
             + ("greedy / with prediction | " * greedy) + "same text |", "|---" * (10 + 2 * greedy) + "|"]
    heavy, everything = [], []
    for g in groups:
        n, p, o = g["native"], g["openai+prediction"], g["openai"]
        accepted = p["accepted_prediction_tokens"] / max(p["accepted_prediction_tokens"] + p["rejected_prediction_tokens"], 1)
        ratios = (p["seconds"] / n["seconds"], o["seconds"] / p["seconds"]) + (
            (g["greedy"]["seconds"] / p["seconds"],) if greedy else ())
        everything.append(ratios)
        if accepted >= COPY_HEAVY:
            heavy.append(ratios)
        same = len({r["text_sha"] for r in g.values()}) == 1
        cells = [n["id"], n["round"], n["chars"]] + [f"{g[run]['seconds']:.2f}" for run in runs] + [
            f"{accepted:.0%}"] + [f"{r:.3f}" for r in ratios] + [same]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    for round_ in sorted({g["native"]["round"] for g in groups}):
        total = {run: sum(g[run]["seconds"] for g in groups if g[run]["round"] == round_) for run in runs}
        lines.append(f"\nround {round_}, all items' wall time: native {total['native']:.2f} s, openai+prediction "
                     f"{total['openai+prediction']:.2f} s ({total['openai+prediction'] / total['native']:.3f}x), "
                     f"openai {total['openai']:.2f} s ({total['openai'] / total['openai+prediction']:.3f}x "
                     "openai+prediction)" + (f", greedy {total['greedy']:.2f} s "
                                              f"({total['greedy'] / total['openai+prediction']:.3f}x openai+prediction)"
                                              if greedy else ""))
    for name, part in (("all items", everything), (f"replies copying >= {COPY_HEAVY:.0%} of the file", heavy)):
        if part:
            lines.append(f"\n{name} ({len(part)} runs): openai+prediction / native: median "
                         f"{statistics.median(r[0] for r in part):.3f}, max {max(r[0] for r in part):.3f}; "
                         f"without / with prediction: median {statistics.median(r[1] for r in part):.3f}, "
                         f"min {min(r[1] for r in part):.3f}" + (
                             f"; greedy / with prediction: median {statistics.median(r[2] for r in part):.3f}, "
                             f"min {min(r[2] for r in part):.3f}" if greedy else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--spread", type=int, default=4, help="items evenly spread over the file sizes")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the items (the VM is noisy)")
    parser.add_argument("--greedy", action="store_true", help="also time plain greedy decoding (native, method regular)")
    parser.add_argument("--model", default=None, help="the daemon's --model (default: the default pair)")
    parser.add_argument("--out", type=Path, default=None, help="write results.jsonl and results.md here")
    parser.add_argument("--summarize", action="store_true", help="only rewrite --out's results.md from its results.jsonl")
    args = parser.parse_args()
    if args.summarize:
        rows = [json.loads(line) for line in (args.out / "results.jsonl").read_text().splitlines()]
        (args.out / "results.md").write_text(summary(rows) + "\n")
        return 0
    items = evenly([json.loads(line) for line in args.dataset.open()], args.spread, key=by_size)
    with tempfile.TemporaryDirectory(prefix="blazedit-bench-") as tmp:
        runs = RUNS if args.greedy else RUNS[:-1]
        rows = asyncio.run(measure(Path(tmp), ["--model", args.model] if args.model else [], items, args.repeat, runs))
    table = summary(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (args.out / "results.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
