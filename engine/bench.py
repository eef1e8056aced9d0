"""`blazedit bench`: every method on every item of an edit dataset, side by side, one process.

Methods run on the same loaded models and alternate per item, so drift (thermal,
other load) hits all alike. The engine's methods run on the bench's runtime, or on
another one as ``METHOD@RUNTIME`` (``blazedit@torch``). Baselines, on the same models
and the same prompt: transformers' own ``generate()`` (``hf-*``) and llama.cpp's own
``Llama.generate()`` (``llama-*``); their output is cut with the engine's own stop rule
so all stop at the same token. Speed is characters of the produced file per second
of wall time, prefill included (as in the original work). Identity is measured
against ``regular`` on the same runtime.

The harness lives in the package because ``blazedit bench`` runs it; bench/ holds
the datasets, the committed results and one-off experiment scripts run from a checkout.
"""

from __future__ import annotations

import difflib
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import msgspec
import torch

from engine import calibration, quality

from engine.client import prompts
from engine.client.protocol import METHODS
from engine.decoding.cost import time_passes
from engine.decoding.loop import Detokenizer, StopRule, Stopper, closes_file
from engine.local_engine import Engine, max_new_tokens_for

HF_PLD_GRID = ("hf-pld-10", "hf-pld-20", "hf-pld-40", "hf-pld-80", "hf-pld-40-ngram10")
HF_METHODS = ("hf-regular", *HF_PLD_GRID, "hf-assisted")
LLAMA_METHODS = ("llama-regular", "llama-pld-10", "llama-pld-20", "llama-pld-40")
QUICK_IDS = {  # fixed, stratified by copy ratio; short enough for ~20 minutes on a 2-core CPU
    "edits-humanevalfix": ["humanevalfix/Python/10", "humanevalfix/Python/32", "humanevalfix/Python/46",
                           "humanevalfix/Python/139"],  # copy ratio deciles 0.1, 0.4, 0.7, 0.95
    "edits-requests": ["psf/requests@65a765fe88:requests/sessions.py", "psf/requests@03e5f5daf3:setup.py"],
}


# Run once per method before timing: the first run on mapped weights (llama.cpp) or a
# fresh model pays page faults and warm-up that would otherwise land on one method.
WARM_UP = {"id": "warm-up", "path": "warm.py", "instruction": "add a docstring", "before": "def f(x):\n    return x\n"}


def default_methods(runtime: str, quick: bool) -> tuple[str, ...]:
    """The engine's methods on ``runtime`` against that runtime's own baselines
    (and, under llama.cpp, our fastest methods on torch, and on a torch target with a llama.cpp draft)."""
    if runtime == "llama.cpp":
        baselines = ("llama-regular", "llama-pld-10", "llama-pld-40") if quick else LLAMA_METHODS
        return (*METHODS, *baselines, "pld@torch", "blazedit@torch", "blazedit@torch+llama.cpp")
    return (*METHODS, *(("hf-regular", "hf-pld-10", "hf-pld-40-ngram10", "hf-assisted") if quick else HF_METHODS))


def runtime_of(method: str, main: str) -> str:
    if method.startswith("hf-"):
        return "torch"
    if method.startswith("llama-"):
        return "llama.cpp"
    return method.partition("@")[2] or main


def check_method(method: str) -> bool:
    name, _, runtime = method.partition("@")
    if runtime:  # "torch", or "torch+llama.cpp": the target's runtime, then the draft's
        return name in METHODS and all(r in ("torch", "llama.cpp") for r in runtime.split("+", 1))
    return (name in (*METHODS, *HF_METHODS, *LLAMA_METHODS) or name.startswith("hf-pld-")
            or name.startswith("llama-pld-") and name.removeprefix("llama-pld-").isdigit())


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
    cached_tokens: int | None  # prompt tokens found in the KV cache (0: the run paid its whole prefill)
    finish_reason: str
    identical: bool | None  # tokens equal regular's (None for regular itself)
    first_divergence: int | None
    copy_ratio: float  # share of the output copied from the input file
    oracle_seconds: float
    unchanged: bool  # edit quality (quality.py): the output is the input file
    parses: bool | None
    removed_definitions: list[str]
    tests_pass: bool | None
    attempts: int = 1  # the bench asks once (retry_unchanged off, as for the baselines)
    partial: str | None = None  # the reply was part of the file: "merged" into it by item (merge.py)
    handover_tokens: int = 0  # tokens written before the edit moved to the second target (decoding/handover.py)


def copy_ratio(before: str, after: str) -> float:
    if not after:
        return 0.0
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(after)


def measure_forward_costs(engine: Engine, context: int = 1500) -> dict:
    """T(k): the target's time to feed k tokens behind a long context (1,500 tokens, where
    an edit's passes run; ForwardCost.measure times a short one at load), and the
    prefill time per token."""
    vocab = min(len(engine.tokenizer), 32000)
    ids = [(i * 7919) % vocab for i in range(context + 256)]  # ordinary tokens, no specials
    prefill, costs = time_passes(engine.target_model.runtime, ids, context, (1, 2, 4, 8, 16, 32, 64, 128, 256),
                                 lambda k: 2)
    engine.target_model.reset()
    return {"context": context, "prefill_seconds": prefill, "prefill_per_token": prefill / context, "T": costs}


def oracle_seconds(costs: dict, prompt_tokens: int, output_tokens: int, ratio: float) -> float:
    """The copy limit: prefill, then each copied token at prefill cost and each new token at one decode step."""
    per_token = costs["prefill_per_token"]
    copied = output_tokens * ratio
    return prompt_tokens * per_token + copied * per_token + (output_tokens - copied) * costs["T"][1]


class Bench:
    def __init__(self, engine: Engine, load_engine: Callable[[str], Engine]):
        self.main = engine.target.runtime  # the bench's runtime
        self._engines = {self.main: engine}
        self._load_engine = load_engine
        self._llamas: dict[bool, object] = {}

    def engine_on(self, runtime: str) -> Engine:
        if runtime not in self._engines:
            self._engines[runtime] = self._load_engine(runtime)
        engine = self._engines[runtime]
        engine.prefix_cache.budget_bytes = 0  # saving prefixes would cost time that no run reuses
        return engine

    def run(self, item: dict, method: str) -> tuple[list[int], str, str, dict]:
        """Tokens, file text, finish reason and counters of one method on one item."""
        engine = self.engine_on(runtime_of(method, self.main))
        engine.forget()  # every run pays its whole prefill
        if method.startswith("hf-"):
            return self._hf(engine, item, method)
        if method.startswith("llama-"):
            return self._llama(engine, item, method)
        *_, result = engine.edit(item["before"], item["instruction"], path=item["path"],
                                 method=method.partition("@")[0], retry_unchanged=False)  # as the baselines
        return result.tokens, result.text, result.finish_reason, {
            **msgspec.structs.asdict(result.stats), "attempts": result.attempt,
            "partial": result.partial.how if result.partial else None}

    def _baseline_setup(self, engine: Engine, item: dict):
        prompt = prompts.build(item["before"], item["instruction"], item["path"])
        ids = engine.encode(prompt).ids
        file_tokens = len(engine.tokenizer(item["before"], add_special_tokens=False)["input_ids"])
        return prompt, ids, StopRule(engine.eos, prompt.fence, max_new_tokens_for(file_tokens))

    def _llama(self, engine: Engine, item: dict, method: str):
        """llama.cpp's own generate(), greedy; its prompt lookup needs every position's logits."""
        from llama_cpp import GGML_TYPE_F32, Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        weights = engine.loaded_target.model
        lookup = method.startswith("llama-pld-")
        if lookup not in self._llamas:
            exact = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32, "flash_attn": False} \
                if weights.float32_cache else {}
            self._llamas[lookup] = Llama(weights.path, n_ctx=weights.context_tokens, n_threads=weights.threads,
                                         n_threads_batch=weights.threads, logits_all=lookup, verbose=False, **exact)
        llm = self._llamas[lookup]
        llm.draft_model = LlamaPromptLookupDecoding(num_pred_tokens=int(method.removeprefix("llama-pld-"))) \
            if lookup else None
        prompt, ids, rule = self._baseline_setup(engine, item)
        detok = Detokenizer(engine.tokenizer)
        stopper = Stopper(rule, detok)
        llm.reset()  # no prefix reuse between runs
        start, first, reason = time.perf_counter(), None, "length"
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            first = first or time.perf_counter()
            if stopped := stopper.push(token):
                reason = stopped
                break
        seconds = time.perf_counter() - start
        return _baseline_result(prompt, ids, stopper, reason, seconds, first - start if first else None)

    @torch.inference_mode()
    def _hf(self, engine: Engine, item: dict, method: str):
        prompt, ids, rule = self._baseline_setup(engine, item)
        kwargs = {"max_new_tokens": rule.max_new_tokens, "do_sample": False, "eos_token_id": sorted(rule.eos),
                  "pad_token_id": engine.tokenizer.pad_token_id or min(rule.eos)}
        if method.startswith("hf-pld-"):
            n, _, ngram = method.removeprefix("hf-pld-").partition("-ngram")
            kwargs["prompt_lookup_num_tokens"] = int(n)
            if ngram:
                kwargs["max_matching_ngram_size"] = int(ngram)
        elif method == "hf-assisted":
            kwargs["assistant_model"] = engine.loaded_draft.model
        fence_stop = _FenceStop(engine.tokenizer, prompt.fence, len(ids))
        streamer = _FirstToken()
        input_ids = torch.tensor([ids], device=engine.loaded_target.device)
        start = time.perf_counter()
        out = engine.loaded_target.model.generate(input_ids, stopping_criteria=[fence_stop], streamer=streamer,
                                                  **kwargs)
        seconds = time.perf_counter() - start
        detok = Detokenizer(engine.tokenizer)
        stopper = Stopper(rule, detok)
        reason = next((r for r in map(stopper.push, out[0, len(ids):].tolist()) if r), "length")
        first = streamer.first - start if streamer.first else None
        return _baseline_result(prompt, ids, stopper, reason, seconds, first)


def _baseline_result(prompt, ids, stopper: Stopper, reason: str, seconds: float, first_token_seconds: float | None):
    """A baseline's tokens, file text, finish reason and counters, as ``Bench.run`` returns them."""
    stopper.detok.flush()
    text = prompt.file_from_reply(stopper.detok.text) if reason == "stop" \
        else prompt.restore_layout(stopper.detok.text, False)
    stats = {"tokens": len(stopper.tokens), "seconds": seconds, "prompt_tokens": len(ids),
             "first_token_seconds": first_token_seconds, "cached_tokens": 0, "attempts": 1, "partial": None}
    return stopper.tokens, text, reason, stats


class _FenceStop:
    """transformers StoppingCriteria: stop once the reply has a closing fence line."""

    def __init__(self, tokenizer, fence: str, prompt_len: int):
        self.tokenizer, self.fence, self.prompt_len = tokenizer, fence, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        done = closes_file(self.tokenizer.decode(input_ids[0, self.prompt_len:]), self.fence)
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


def load_items(path: Path, ids: list[str] | None, limit: int | None, spread: int | None = None) -> list[dict]:
    """The dataset's items: those in ``ids``, the first ``limit``, or ``spread`` items at
    evenly spaced ranks of the reference copy ratio (a stratified sample of any size)."""
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if ids:
        items = [i for i in items if i["id"] in ids]
    if spread:
        return evenly(items, spread, key=lambda item: item.get("copy_ratio", 0.0))
    return items[:limit] if limit else items


def by_size(item: dict) -> int:
    """The item's file size, to spread a sample over (``evenly``)."""
    return len(item["before"])


def evenly(items: list[dict], count: int, key: Callable[[dict], float]) -> list[dict]:
    """``count`` items at evenly spaced ranks of ``key`` (a stratified sample of any size)."""
    ranked = sorted(items, key=key)
    count = min(count, len(ranked))
    return [ranked[round(n * (len(ranked) - 1) / max(count - 1, 1))] for n in range(count)]


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
            "p90": percentile(speeds, 0.10),  # the slow tail: 10th percentile of chars/s
            # None: nothing to compare with (regular itself, or no regular in the run)
            "identity_rate": (sum(r.identical for r in compared) / len(compared)) if compared else None,
            "oracle_ratio": statistics.fmean(r.seconds / r.oracle_seconds for r in rows),
            "items": len(rows),
            "noop_rate": _rate(r.unchanged for r in rows),
            "drop_rate": _rate(bool(r.removed_definitions) for r in rows),
            "merged_rate": _rate(r.partial is not None for r in rows),
            "parse_rate": _rate(r.parses for r in rows),
            "pass_rate": _rate(r.tests_pass for r in rows),
        }
    return summary


def _rate(flags) -> float | None:
    """Share of True among the flags that are not None; None if all are."""
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of sorted values, linearly interpolated (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def run_bench(engine: Engine, load_engine: Callable[[str], Engine], items: list[dict], methods: list[str],
              out: Path, command: str, progress) -> dict:
    """``load_engine(runtime)`` loads the same models on another runtime, for ``METHOD@RUNTIME``,
    ``hf-*`` and ``llama-*`` methods that need it."""
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(engine, load_engine)
    costs = measure_forward_costs(engine)
    records: list[Record] = []
    task = progress.add_task("bench", total=len(items) * len(methods))
    engine.open_second_target()  # loaded at an edit's first move otherwise: the first moved item would pay it
    for method in methods:
        progress.update(task, description=f"warming up · {method}")
        bench.run(WARM_UP, method)
    for index, item in enumerate(items):
        order = methods[index % len(methods):] + methods[: index % len(methods)]  # alternate who goes first
        runs = {}
        for method in order:
            progress.update(task, description=f"{item['id'][-40:]} · {method}")
            runs[method] = bench.run(item, method)
            progress.advance(task)
            if not progress.console.is_terminal:  # a log gets a line per run instead of a bar
                progress.console.print(f"bench: {item['id']} · {method} · {runs[method][3]['seconds']:.1f} s",
                                       highlight=False, soft_wrap=True)
        for method, (tokens, text, reason, stats) in runs.items():
            runtime = runtime_of(method, bench.main).partition("+")[0]  # regular has no draft
            regular = "regular" if runtime == bench.main else f"regular@{runtime}"
            reference = runs.get(regular, (None,))[0] if method != regular else None
            seconds = stats["seconds"]
            divergence = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), None) \
                if reference is not None else None
            if divergence is None and reference is not None and len(tokens) != len(reference):
                divergence = min(len(tokens), len(reference))
            ratio = copy_ratio(item["before"], text)
            judged = quality.assess(item, text)
            records.append(Record(
                item=item["id"], method=method, seconds=seconds,
                chars_per_second=len(text) / seconds if seconds else 0.0, tokens=len(tokens),
                target_forward_passes=stats.get("target_forward_passes"),
                draft_forward_passes=stats.get("draft_forward_passes"),
                drafted=stats.get("drafted"), accepted=stats.get("accepted"),
                first_token_seconds=stats.get("first_token_seconds"), cached_tokens=stats.get("cached_tokens"),
                finish_reason=reason,
                identical=None if reference is None else divergence is None,
                first_divergence=divergence, copy_ratio=ratio,
                oracle_seconds=oracle_seconds(costs, stats.get("prompt_tokens", 0), len(tokens), ratio),
                unchanged=judged.unchanged, parses=judged.parses, removed_definitions=judged.removed,
                tests_pass=judged.tests_pass, attempts=stats.get("attempts", 1), partial=stats.get("partial"),
                handover_tokens=stats.get("handover_tokens", 0),
            ))
        _write(out, records, methods, costs, command, engine)
    return summarize(records, methods)


def _write(out: Path, records: list[Record], methods: list[str], costs: dict, command: str, engine: Engine) -> None:
    summary = summarize(records, methods)
    machine = f"{platform.machine()} {calibration.cpu_description()} · torch {torch.__version__} · " \
              f"{torch.get_num_threads()} threads · {engine.target.runtime} {engine.target.device} {engine.target.dtype}"
    data = {"command": command, "machine": machine, "target": engine.target.spec,
            "draft": engine.draft.spec if engine.draft else None, "forward_costs": costs,
            "runtime_choice": engine.choice.describe() if engine.choice else None,
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
             *(["Runtime chosen by calibration (`auto`):", "", "```", *data["runtime_choice"], "```", ""]
               if data.get("runtime_choice") else []),
             "Characters of output per second, wall time including prefill; P90 is the slow tail "
             "(10th percentile of chars/s). Identity: tokens equal those of `regular` on the same runtime.", "",
             "| method | mean | P50 | P90 | × regular (mean / P90) | × best hf-pld (mean / P90) | identity | time / oracle |",
             "|---|---|---|---|---|---|---|---|"]
    reg = summary.get("regular")
    for method, s in summary.items():
        vs_reg = f"{s['mean'] / reg['mean']:.2f} / {s['p90'] / reg['p90']:.2f}" if reg else "–"
        best = summary[best_hf_pld] if best_hf_pld else None
        vs_pld = f"{s['mean'] / best['mean']:.2f} / {s['p90'] / best['p90']:.2f}" if best else "–"
        lines.append(f"| {method} | {s['mean']:.1f} | {s['p50']:.1f} | {s['p90']:.1f} | {vs_reg} | {vs_pld} | "
                     f"{'–' if s['identity_rate'] is None else format(s['identity_rate'], '.0%')} | "
                     f"{s['oracle_ratio']:.2f} |")
    lines += ["", f"Best transformers PLD configuration: `{best_hf_pld}`." if best_hf_pld else "", "",
              "## Edit quality", "", "Unchanged: the output is the input file (no edit made). Drops: outputs that "
              "removed a definition or top-level statement the instruction does not name (engine/client/guard.py). Merged: "
              "the reply was part of the file and was merged into it by item (engine/client/merge.py; the baselines' "
              "replies are taken as they are). Pass: the item's own tests pass on the output (HumanEvalFix).", "",
              "| method | unchanged | drops | merged | parses | tests pass |", "|---|---|---|---|---|---|",
              *(f"| {method} | {_pct(s['noop_rate'])} | {_pct(s['drop_rate'])} | {_pct(s.get('merged_rate'))} | "
                f"{_pct(s['parse_rate'])} | {_pct(s['pass_rate'])} |" for method, s in summary.items()), "",
              "## Items", "", "| item | method | s | chars/s | tokens | target passes | drafted / accepted | "
              "copy ratio | finish | identical (first divergence) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        drafted = f"{r['drafted']} / {r['accepted']}" if r["drafted"] is not None else "–"
        ident = "–" if r["identical"] is None else "yes" if r["identical"] else f"no ({r['first_divergence']})"
        moved = f", moved at {r['handover_tokens']}" if r.get("handover_tokens") else ""
        lines.append(f"| {r['item']} | {r['method']} | {r['seconds']:.1f} | {r['chars_per_second']:.1f} | "
                     f"{r['tokens']} | {r['target_forward_passes'] or '–'} | {drafted} | {r['copy_ratio']:.3f} | "
                     f"{r['finish_reason']}{moved} | {ident} |")
    return "\n".join(lines) + "\n"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else format(rate, ".0%")


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
