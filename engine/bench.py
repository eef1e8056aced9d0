"""`blazedit bench`: every method on every item of an edit dataset, side by side, one process.

Methods run on the same loaded models and alternate per item, so drift (thermal,
other load) hits all alike. Baselines are transformers' own ``generate()`` on the
same models and the same prompt; their output is cut with the engine's own stop rule
so both stop at the same token. Speed is characters of the produced file per second
of wall time, prefill included (as in the original work).
"""

from __future__ import annotations

import difflib
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec
import torch

from engine import prompts
from engine.decoding.loop import Detokenizer, StopRule, Stopper
from engine.session import Engine, max_new_tokens_for

ENGINE_METHODS = ("regular", "pld", "assisted", "blazedit")
HF_PLD_GRID = ("hf-pld-10", "hf-pld-20", "hf-pld-40", "hf-pld-80", "hf-pld-40-ngram10")
DEFAULT_METHODS = (*ENGINE_METHODS, "hf-regular", *HF_PLD_GRID, "hf-assisted")
QUICK_IDS = {  # fixed, stratified by copy ratio; short enough for ~20 minutes on a 2-core CPU
    "edits-humanevalfix": ["humanevalfix/Python/10", "humanevalfix/Python/32", "humanevalfix/Python/46",
                           "humanevalfix/Python/139"],  # copy ratio deciles 0.1, 0.4, 0.7, 0.95
    "edits-requests": ["psf/requests@65a765fe88:requests/sessions.py", "psf/requests@03e5f5daf3:setup.py"],
}
QUICK_METHODS = (*ENGINE_METHODS, "hf-regular", "hf-pld-10", "hf-pld-40-ngram10", "hf-assisted")


@dataclass
class Record:
    item: str
    method: str
    seconds: float
    chars_per_second: float
    tokens: int
    target_forward_passes: int | None
    draft_forward_passes: int | None
    drafted: int | None
    accepted: int | None
    first_token_seconds: float | None
    finish_reason: str
    identical: bool | None  # tokens equal regular's (None for regular itself)
    first_divergence: int | None
    copy_ratio: float  # share of the output copied from the input file
    oracle_seconds: float


def copy_ratio(before: str, after: str) -> float:
    if not after:
        return 0.0
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(after)


def measure_forward_costs(engine: Engine, context: int = 1500) -> dict:
    """T(k): the target's time to feed k tokens after a warm context, and prefill time per token."""
    runtime = engine.target_model.runtime
    vocab = min(len(engine.tokenizer), 32000)
    ids = [(i * 7919) % vocab for i in range(context + 256)]  # ordinary tokens, no specials
    runtime.truncate(0)
    start = time.perf_counter()
    runtime.forward(ids[:context], keep=1)
    prefill = time.perf_counter() - start
    costs = {}
    for k in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        best = float("inf")
        for _ in range(2):
            runtime.truncate(context)
            start = time.perf_counter()
            runtime.forward(ids[context:context + k], keep=k)
            best = min(best, time.perf_counter() - start)
        costs[k] = best
    runtime.truncate(0)
    engine.target_model.tokens.clear()
    return {"context": context, "prefill_seconds": prefill, "prefill_per_token": prefill / context, "T": costs}


def oracle_seconds(costs: dict, prompt_tokens: int, output_tokens: int, ratio: float) -> float:
    """The copy limit: prefill, then each copied token at prefill cost and each new token at one decode step."""
    per_token = costs["prefill_per_token"]
    copied = output_tokens * ratio
    return prompt_tokens * per_token + copied * per_token + (output_tokens - copied) * costs["T"][1]


class Bench:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.model = engine.loaded_target.model
        self.draft = engine.loaded_draft.model if engine.loaded_draft else None

    def run(self, item: dict, method: str) -> tuple[list[int], str, str, dict]:
        """Tokens, file text, finish reason and counters of one method on one item."""
        self.engine.prefix_cache = type(self.engine.prefix_cache)(0)  # every method pays its prefill
        if method in ENGINE_METHODS:
            *_, result = self.engine.edit(item["before"], item["instruction"], path=item["path"], method=method)
            return result.tokens, result.text, result.finish_reason, msgspec.structs.asdict(result.stats)
        return self._hf(item, method)

    @torch.inference_mode()
    def _hf(self, item: dict, method: str):
        prompt = prompts.build(item["before"], item["instruction"], item["path"])
        ids = self.engine.prompt_tokens(prompt)
        file_tokens = len(self.engine.tokenizer(item["before"], add_special_tokens=False)["input_ids"])
        rule = StopRule(self.engine.eos, prompt.fence, max_new_tokens_for(file_tokens))
        kwargs = {"max_new_tokens": rule.max_new_tokens, "do_sample": False, "eos_token_id": sorted(rule.eos),
                  "pad_token_id": self.engine.tokenizer.pad_token_id or min(rule.eos)}
        if method.startswith("hf-pld-"):
            n, _, ngram = method.removeprefix("hf-pld-").partition("-ngram")
            kwargs["prompt_lookup_num_tokens"] = int(n)
            if ngram:
                kwargs["max_matching_ngram_size"] = int(ngram)
        elif method == "hf-assisted":
            kwargs["assistant_model"] = self.draft
        fence_stop = _FenceStop(self.engine.tokenizer, prompt.fence, len(ids))
        streamer = _FirstToken()
        input_ids = torch.tensor([ids], device=self.engine.loaded_target.device)
        start = time.perf_counter()
        out = self.model.generate(input_ids, stopping_criteria=[fence_stop], streamer=streamer, **kwargs)
        seconds = time.perf_counter() - start
        detok = Detokenizer(self.engine.tokenizer)
        stopper = Stopper(rule, detok)
        reason = next((r for r in map(stopper.push, out[0, len(ids):].tolist()) if r), "length")
        detok.flush()
        text = prompt.file_from_reply(detok.text) if reason == "stop" else prompt.restore_layout(detok.text, False)
        stats = {"tokens": len(stopper.tokens), "seconds": seconds, "prompt_tokens": len(ids),
                 "first_token_seconds": (streamer.first - start) if streamer.first else None}
        return stopper.tokens, text, reason, stats


class _FenceStop:
    """transformers StoppingCriteria: stop once the reply has a closing fence line."""

    def __init__(self, tokenizer, fence: str, prompt_len: int):
        self.tokenizer, self.fence, self.prompt_len = tokenizer, fence, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        reply = self.tokenizer.decode(input_ids[0, self.prompt_len:])
        done = reply.startswith(self.fence) or ("\n" + self.fence) in reply
        return torch.tensor([done], device=input_ids.device)


class _FirstToken:
    """A generate() streamer that notes when the first new token arrives (the first put is the prompt)."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self):
        pass


def load_items(path: Path, ids: list[str] | None, limit: int | None) -> list[dict]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if ids:
        items = [i for i in items if i["id"] in ids]
    return items[:limit] if limit else items


def summarize(records: list[Record], methods: list[str]) -> dict:
    summary = {}
    for method in methods:
        rows = [r for r in records if r.method == method]
        if not rows:
            continue
        speeds = sorted(r.chars_per_second for r in rows)
        compared = [r for r in rows if r.identical is not None]
        summary[method] = {
            "mean": statistics.fmean(speeds),
            "p50": statistics.median(speeds),
            "p90": _percentile(speeds, 0.10),  # the slow tail: 10th percentile of chars/s
            "identity_rate": (sum(r.identical for r in compared) / len(compared)) if compared else 1.0,
            "oracle_ratio": statistics.fmean(r.seconds / r.oracle_seconds for r in rows),
            "items": len(rows),
        }
    return summary


def _percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def run_bench(engine: Engine, items: list[dict], methods: list[str], out: Path, command: str, progress) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(engine)
    costs = measure_forward_costs(engine)
    records: list[Record] = []
    task = progress.add_task("bench", total=len(items) * len(methods))
    for index, item in enumerate(items):
        order = methods[index % len(methods):] + methods[: index % len(methods)]  # alternate who goes first
        runs = {}
        for method in order:
            progress.update(task, description=f"{item['id'][-40:]} · {method}")
            runs[method] = bench.run(item, method)
            progress.advance(task)
        reference = runs.get("regular", (None,))[0]
        for method, (tokens, text, reason, stats) in runs.items():
            seconds = stats["seconds"]
            divergence = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), None) \
                if reference is not None else None
            if divergence is None and reference is not None and len(tokens) != len(reference):
                divergence = min(len(tokens), len(reference))
            ratio = copy_ratio(item["before"], text)
            records.append(Record(
                item=item["id"], method=method, seconds=seconds,
                chars_per_second=len(text) / seconds if seconds else 0.0, tokens=len(tokens),
                target_forward_passes=stats.get("target_forward_passes"),
                draft_forward_passes=stats.get("draft_forward_passes"),
                drafted=stats.get("drafted"), accepted=stats.get("accepted"),
                first_token_seconds=stats.get("first_token_seconds"), finish_reason=reason,
                identical=None if method == "regular" or reference is None else divergence is None,
                first_divergence=divergence, copy_ratio=ratio,
                oracle_seconds=oracle_seconds(costs, stats.get("prompt_tokens", 0), len(tokens), ratio),
            ))
        _write(out, records, methods, costs, command, engine)
    return summarize(records, methods)


def _write(out: Path, records: list[Record], methods: list[str], costs: dict, command: str, engine: Engine) -> None:
    summary = summarize(records, methods)
    machine = f"{platform.machine()} {platform.processor() or ''} · torch {torch.__version__} · " \
              f"{torch.get_num_threads()} threads · {engine.target.device} {engine.target.dtype}"
    data = {"command": command, "machine": machine, "target": engine.target.spec,
            "draft": engine.draft.spec if engine.draft else None, "forward_costs": costs,
            "summary": summary, "records": [asdict(r) for r in records]}
    (out / "results.json").write_text(json.dumps(data, indent=1))
    (out / "results.md").write_text(_markdown(data))
    _plot(records, methods, out / "chars_per_second.png")


def _markdown(data: dict) -> str:
    summary = data["summary"]
    hf_pld = [m for m in summary if m.startswith("hf-pld")]
    best_hf_pld = max(hf_pld, key=lambda m: summary[m]["mean"]) if hf_pld else None
    lines = [f"# Benchmark: {data['target']} (draft {data['draft']})", "",
             f"Command: `{data['command']}`", "", f"Machine: {data['machine']}", "",
             "Characters of output per second, wall time including prefill; P90 is the slow tail "
             "(10th percentile of chars/s). Identity: tokens equal `regular`'s.", "",
             "| method | mean | P50 | P90 | × regular (mean / P90) | × best hf-pld (mean / P90) | identity | time / oracle |",
             "|---|---|---|---|---|---|---|---|"]
    reg = summary.get("regular")
    for method, s in summary.items():
        vs_reg = f"{s['mean'] / reg['mean']:.2f} / {s['p90'] / reg['p90']:.2f}" if reg else "–"
        best = summary[best_hf_pld] if best_hf_pld else None
        vs_pld = f"{s['mean'] / best['mean']:.2f} / {s['p90'] / best['p90']:.2f}" if best else "–"
        lines.append(f"| {method} | {s['mean']:.1f} | {s['p50']:.1f} | {s['p90']:.1f} | {vs_reg} | {vs_pld} | "
                     f"{s['identity_rate']:.0%} | {s['oracle_ratio']:.2f} |")
    lines += ["", f"Best transformers PLD configuration: `{best_hf_pld}`." if best_hf_pld else "", "",
              "## Items", "", "| item | method | s | chars/s | tokens | target passes | drafted / accepted | "
              "copy ratio | finish | identical (first divergence) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        drafted = f"{r['drafted']} / {r['accepted']}" if r["drafted"] is not None else "–"
        ident = "–" if r["identical"] is None else "yes" if r["identical"] else f"no ({r['first_divergence']})"
        lines.append(f"| {r['item']} | {r['method']} | {r['seconds']:.1f} | {r['chars_per_second']:.1f} | "
                     f"{r['tokens']} | {r['target_forward_passes'] or '–'} | {drafted} | {r['copy_ratio']:.3f} | "
                     f"{r['finish_reason']} | {ident} |")
    return "\n".join(lines) + "\n"


def _plot(records: list[Record], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in methods:
        rows = [r for r in records if r.method == method]
        if rows:
            ax.scatter([r.copy_ratio for r in rows], [r.chars_per_second for r in rows], label=method, s=18)
    ax.set_xlabel("copy ratio of the produced output (share copied from the input file)")
    ax.set_ylabel("characters per second (wall, prefill included)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
