"""What a forward pass costs on this machine, per runtime, measured once and kept; and the
runtime ``auto`` picks from those costs.

Which runtime is fastest is a property of the machine and of the edit: on a CPU with
AVX-512 BF16 a bf16 torch pass over 128 tokens costs ~6x one token, while llama.cpp's
batch-invariant Q4 kernels cost ~k times one token there; elsewhere llama.cpp decodes a
token several times faster (docs/performance.md). So the first load of a model pair times
T(k) for the target and the draft on every runtime installed, behind a realistic context,
and keeps the figures under the cache directory, keyed by all that changes them (CPU and
its flags, threads, library versions, the models). Every later load reads them: no timing
at load, and the proposal lengths, which the costs decide, are the same run after run.

``auto`` then predicts the time of a fixed mix of edits (``MIX``: copy-heavy commits and
short rewrites from bench/data) on each choice of target and draft runtime and takes the
fastest (the geometric mean of the mix: each edit weighs the same whatever its length).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import msgspec
import numpy as np
import torch

from engine import models
from engine.catalogue import PACKAGED
from engine.decoding.cost import MEASURED_LENGTHS, ForwardCost
from engine.runtimes.base import Runtime, open_runtime

log = logging.getLogger(__name__)

FAST = "fast"
FORMAT = 1  # bump when what is measured, or how, changes: older files are measured again
CONTEXT = 1024  # cached tokens the timed passes run behind: an edit's prompt of a 3K-char file
PROBE_PASSES = (3, 16, 64, 257)  # pass lengths probed (``batch_invariant``): 257, a default proposal and one
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile",
             "avx_vnni", "f16c", "asimd", "sve", "sve2", "i8mm", "bf16")
"""The CPU features that decide which kernels run (x86 and ARM); others do not change T(k)."""


class Setting(NamedTuple):
    """Where a model runs: a runtime, and its dtype or kernels."""

    runtime: str  # "torch" or "llama.cpp"
    dtype: str = ""
    """torch: "bf16", "fp16", "fp32". llama.cpp (the GGUF's own quantisation): "" for the
    batch-invariant kernels, ``FAST`` for llama.cpp's own (not exact: a pass may round
    differently from one-token steps; engine/runtimes/llama_runtime.py)."""

    def __str__(self) -> str:
        return f"{self.runtime} {self.dtype}".strip()


class ModelCosts(msgspec.Struct, forbid_unknown_fields=True):
    """One model on one setting: T(k) in seconds behind ``CONTEXT`` tokens, and prefill."""

    seconds: dict[int, float]
    prefill_per_token: float
    exact: bool | None = None
    """Whether a target's passes scored bit for bit as its one-token steps (``batch_invariant``;
    None: not probed yet, ``fastest_exact`` probes when ``--exact`` asks): its verification then
    chooses every token as plain greedy decoding does, whatever the schedule of passes."""

    def forward_cost(self) -> ForwardCost:
        return ForwardCost(self.seconds)


class Calibration(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    key: dict[str, str]
    context: int
    target: dict[str, ModelCosts] = {}  # str(Setting) -> costs
    draft: dict[str, ModelCosts] = {}
    measured_seconds: float = 0.0  # time spent measuring, all settings together
    measured_on: str = ""  # ISO date of the last measurement


class Choice(NamedTuple):
    target: Setting
    draft: Setting | None
    predicted: dict[tuple[Setting, Setting | None], float]
    """The mix's predicted seconds (geometric mean over its edits) for every pair considered."""
    best_per_edit: list[tuple[Setting, Setting | None]]
    """For each edit of ``MIX``, the pair predicted fastest for it alone."""
    second: Setting | None = None
    """The target predicted fastest for the most edits of ``MIX`` that ``target`` is not
    fastest for: an edit moves to it midway when its passes say so (decoding/handover.py)."""
    exact: bool = False
    """``--exact``'s choice (``choose_for``): ``target`` was probed exact, alone."""

    def describe(self) -> list[str]:
        """The choice and the figures behind it, for ``-v`` and the benchmark's record."""
        best = self.predicted[self.target, self.draft]
        lines = [f"runtime: {pair_name(self.target, self.draft)}, predicted {best:.1f} s per edit of the mix "
                 f"(geometric mean of {len(MIX)})"]
        for pair, seconds in sorted(self.predicted.items(), key=lambda kv: kv[1]):
            if pair != (self.target, self.draft):
                lines.append(f"  instead: {pair_name(*pair)}: {seconds:.1f} s ({seconds / best:.2f}x)")
        if len(set(self.best_per_edit)) > 1:
            counts = {p: self.best_per_edit.count(p) for p in self.best_per_edit}
            lines.append("  the fastest differs by edit: " + ", ".join(
                f"{pair_name(*p)} on {n} of {len(MIX)}" for p, n in counts.items()))
        if self.second:
            lines.append(f"  second target: {self.second}, loaded when an edit's passes first say it is faster there")
        if self.exact:
            lines.append(f"  exact: {self.target}'s passes score bit for bit as its one-token steps (probed on this "
                         "machine): every method's output is plain greedy decoding's")
        return lines


def pair_name(target: Setting, draft: Setting | None) -> str:
    if draft is None:
        return f"{target} (no draft)"
    return str(target) if draft == target else f"{target} target, {draft} draft"


# ---------------------------------------------------------------- the edits auto predicts


class MixEdit(NamedTuple):
    prompt_tokens: int
    output_tokens: int
    copied: float  # share of the output copied from the file


MIX = (
    # Made by `python bench/edit_mix.py`: the prompts of the edits of three committed runs (eight
    # requests commits, four HumanEvalFix items, the two writing-heavy edits) and what the
    # target itself wrote for them by plain decoding (tokens, share copied from the file).
    MixEdit(625, 533, 1.000), MixEdit(632, 546, 1.000), MixEdit(1309, 1264, 0.959), MixEdit(1644, 1538, 0.997),
    MixEdit(906, 813, 1.000), MixEdit(1178, 1141, 0.949), MixEdit(870, 782, 1.000), MixEdit(1181, 1091, 0.998),
    MixEdit(275, 183, 1.000), MixEdit(451, 388, 0.899), MixEdit(331, 241, 1.000), MixEdit(233, 141, 1.000),
    MixEdit(255, 425, 0.300), MixEdit(777, 855, 0.845),
)
# Per-token acceptance. Committed runs (bench/results/): pld's lookups had 0.94-0.98 of their
# tokens accepted on the requests and HumanEvalFix sets, blazedit's proposals 0.46-0.62 on the
# writing-heavy edits.
COPY_ACCEPTANCE = 0.97
WRITE_ACCEPTANCE = 0.6
LONGEST_PROPOSAL = 128


def predict_seconds(target: ModelCosts, draft: ModelCosts | None, edit: MixEdit) -> float:
    """An edit's time under the default method: the prompt's prefill; copied tokens
    verified in long lookup passes; new tokens from the draft model where its proposals
    pay (after its own read of the prompt), else one target pass each."""
    t = target.forward_cost()
    copied = edit.output_tokens * edit.copied
    written = edit.output_tokens - copied
    copy_rate = _tokens_per_second(t, COPY_ACCEPTANCE, per_token=0.0)
    write_seconds = written * t(1)
    if draft is not None:
        d = draft.forward_cost()
        with_draft = edit.prompt_tokens * draft.prefill_per_token + \
            written / _tokens_per_second(t, WRITE_ACCEPTANCE, per_token=d(1))
        write_seconds = min(write_seconds, with_draft)
    return edit.prompt_tokens * target.prefill_per_token + copied / copy_rate + write_seconds


def _tokens_per_second(cost: ForwardCost, p: float, per_token: float) -> float:
    k = cost.best_length(p, LONGEST_PROPOSAL, per_token=per_token)
    expected = sum(p ** i for i in range(k + 1))
    return expected / (cost(1 + k) + k * per_token)


def choose_for(spec: str, targets: list[Setting], drafts: list[Setting] | None, calibration: Calibration, *,
               exact: bool, device: str | None, threads: int, notify: Callable[[str], None] = log.info) -> Choice:
    """What a load of ``spec`` runs on: ``choose``'s pair, or under ``exact`` the pair on
    ``fastest_exact``'s target alone (no second target: a move would leave its greedy output
    at near-ties)."""
    if exact:
        targets = [fastest_exact(spec, targets, drafts, calibration, device=device, threads=threads, notify=notify)]
    return choose(calibration, targets, drafts)._replace(exact=exact)


def choose(calibration: Calibration, targets: list[Setting], drafts: list[Setting] | None) -> Choice:
    """The target and draft settings with the least predicted time over ``MIX`` (geometric
    mean); ``drafts`` None: no draft model."""
    pairs = [(t, d) for t in targets for d in (drafts or [None])]
    predicted, per_edit = {}, []
    for t, d in pairs:
        times = [predict_seconds(calibration.target[str(t)], calibration.draft[str(d)] if d else None, e)
                 for e in MIX]
        predicted[t, d] = math.exp(sum(map(math.log, times)) / len(times))
        per_edit.append(times)
    best = min(predicted, key=lambda pair: (predicted[pair], pairs.index(pair)))
    best_per_edit = [pairs[min(range(len(pairs)), key=lambda i: (per_edit[i][e], pairs[i] != best))]  # ties: the choice
                     for e in range(len(MIX))]
    others = [t for t, _ in best_per_edit if t != best[0]]
    return Choice(best[0], best[1], predicted, best_per_edit, max(others, key=others.count) if others else None)


# ---------------------------------------------------------------- which settings a load may take


def candidates(spec: str, runtime: str | None, device: str | None, dtype: str | None) -> list[Setting]:
    """The settings a model may run on: the runtime asked for, or under ``auto`` each one
    installed that runs it (llama.cpp: GGUF models on a CPU, its exact kernels and its own;
    torch: anything, in the dtypes the device runs fast). Asked for by name, llama.cpp runs
    its exact kernels."""
    if runtime not in (None, "auto", *models.RUNTIMES):
        raise models.ModelError(f"unknown runtime {runtime!r}: use auto, {', '.join(models.RUNTIMES)}")
    cpu = device == "cpu" or (device is None and models.select_device(None).type == "cpu")
    gguf = spec in PACKAGED or spec.endswith(".gguf")
    auto = runtime in (None, "auto")
    settings = []
    if runtime == "llama.cpp" or (auto and cpu and dtype is None and models.llama_cpp_installed() and gguf):
        settings.append(Setting("llama.cpp"))
        if auto:
            settings.append(Setting("llama.cpp", FAST))
    if runtime == "torch" or auto:
        settings += [Setting("torch", d) for d in _torch_dtypes(spec, device, dtype)]
    return settings


def _torch_dtypes(spec: str, device: str | None, dtype: str | None) -> list[str]:
    if dtype:
        return [models.dtype_name(models.select_dtype(dtype, models.select_device(device), spec))]
    chosen = models.dtype_name(models.select_dtype(None, models.select_device(device), spec))
    # On a CPU whose bf16 is fast (AVX-512 BF16, AMX) fp32 may still win short passes: time both.
    return [chosen, "fp32"] if chosen == "bf16" and models.select_device(device).type == "cpu" else [chosen]


# ---------------------------------------------------------------- measuring, and the file it is kept in


def machine_key(target: str, draft: str | None, device: str | None, threads: int) -> dict[str, str]:
    """Everything that changes the measured costs; a new value of any means measuring again."""
    key = {"cpu": _cpu_name(), "cpu_flags": " ".join(_cpu_flags()), "machine": platform.machine(),
           "threads": str(threads), "torch": str(torch.__version__), "device": str(models.select_device(device)),
           "target": _model_identity(target), "draft": _model_identity(draft) if draft else "none",
           "format": str(FORMAT)}
    if models.llama_cpp_installed():
        import llama_cpp

        key["llama_cpp"] = f"{llama_cpp.__version__} batch-invariant={models.llama_batch_invariant()}"
    return key


def path_for(key: dict[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return models.cache_dir() / "calibration" / f"{digest}.json"


def load(key: dict[str, str]) -> Calibration | None:
    try:
        found = msgspec.json.decode(path_for(key).read_bytes(), type=Calibration)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return found if found.key == key and found.format == FORMAT else None


def ensure(target: str, draft: str | None, targets: list[Setting], drafts: list[Setting], *,
           device: str | None, threads: int, notify: Callable[[str], None] = log.info,
           force: bool = False) -> Calibration:
    """The stored calibration for this machine and pair, measuring (and storing) the
    settings it lacks first; ``force``: measure them all again."""
    key = machine_key(target, draft, device, threads)
    calibration = (None if force else load(key)) or Calibration(FORMAT, key, CONTEXT)
    missing = [("target", target, s) for s in targets if str(s) not in calibration.target]
    if draft:
        missing += [("draft", draft, s) for s in drafts if str(s) not in calibration.draft]
    if not missing:
        return calibration
    path = path_for(key)
    notify(f"calibrating this machine for {target}" + (f" + {draft}" if draft else "") +
           f" on {', '.join(sorted({str(s) for *_, s in missing}))}: once, about a minute for each of "
           f"{len(missing)} model settings; kept in {path}")
    start = time.perf_counter()
    for role, spec, setting in missing:
        begun = time.perf_counter()
        costs = measure(spec, setting, device, threads)
        getattr(calibration, role)[str(setting)] = costs
        notify(f"  {role} {spec} on {setting}: T(1) {costs.seconds[1] * 1000:.0f} ms, "
               f"T(16) {costs.seconds[16] * 1000:.0f} ms, T(128) {costs.seconds[128] * 1000:.0f} ms, "
               f"prefill {costs.prefill_per_token * 1000:.1f} ms/token ({time.perf_counter() - begun:.0f} s)")
    calibration.measured_seconds += time.perf_counter() - start
    calibration.measured_on = datetime.date.today().isoformat()
    _write(path, calibration)
    if (busy := other_load(threads)) > 0.5:
        notify(f"the machine was busy while calibrating ({busy:.1f} other runnable processes on average): the "
               "figures may be off; run `blazedit engine calibrate --force` when it is idle")
    return calibration


def measure(spec: str, setting: Setting, device: str | None, threads: int) -> ModelCosts:
    """Load ``spec`` on ``setting`` and time it behind ``CONTEXT`` tokens: every pass length
    once per round, rounds until none improved its best by over 3% (2 to 6 rounds), so
    that a burst of other load lands on one try of each length rather than on every try
    of one."""
    loaded = load_on(spec, setting, device, threads)
    runtime = open_runtime(loaded)
    ids = _ordinary_tokens(loaded, CONTEXT + max(MEASURED_LENGTHS) + 1)
    start = time.perf_counter()
    runtime.forward(ids[:CONTEXT], keep=1)
    prefill = time.perf_counter() - start
    runtime.forward(ids[CONTEXT:CONTEXT + 1], keep=1)  # warm-up
    best = dict.fromkeys(MEASURED_LENGTHS, float("inf"))
    for round_ in range(6):
        improved = False
        for k in MEASURED_LENGTHS:
            runtime.truncate(CONTEXT)
            begun = time.perf_counter()
            runtime.forward(ids[CONTEXT:CONTEXT + k], keep=k)
            seconds = time.perf_counter() - begun
            improved |= seconds < best[k] * 0.97
            best[k] = min(best[k], seconds)
        if round_ >= 1 and not improved:
            break
    return ModelCosts(best, prefill / CONTEXT)


def _ordinary_tokens(loaded: models.LoadedModel, count: int) -> list[int]:
    vocab = min(len(loaded.tokenizer), 32000)
    return [(i * 7919) % (vocab - 32) + 32 for i in range(count)]  # no specials


def fastest_exact(spec: str, targets: list[Setting], drafts: list[Setting] | None, calibration: Calibration, *,
                  device: str | None, threads: int, notify: Callable[[str], None] = log.info) -> Setting:
    """The target setting predicted fastest of those whose passes are exact (``--exact``):
    probing them in that order until one is, each once (the answer is kept with the costs)."""
    for setting in sorted(targets, key=lambda t: min(choose(calibration, [t], drafts).predicted.values())):
        costs = calibration.target[str(setting)]
        if costs.exact is None:
            cost, length = costs.forward_cost(), max(PROBE_PASSES)
            seconds = sum(math.ceil(length / k) * cost(k) for k in (1, *PROBE_PASSES))
            notify(f"probing whether {spec} on {setting} verifies exactly (its passes against one-token "
                   f"steps): once, about {seconds:.0f} s")
            loaded = load_on(spec, setting, device, threads)
            costs.exact = batch_invariant(open_runtime(loaded), _ordinary_tokens(loaded, CONTEXT + length))
            notify(f"  {setting}: " + ("exact" if costs.exact else "its passes round differently from one-token steps"))
            _write(path_for(calibration.key), calibration)
        if costs.exact:
            return setting
    raise models.ModelError(
        f"--exact: no target setting here ({', '.join(map(str, targets))}) scores its verification passes bit "
        "for bit as one-token steps (probed on this machine); llama.cpp's exact kernels do where llama.cpp is "
        f"built without llamafile's sgemm: {models.LLAMA_EXACT_INSTALL}")


def batch_invariant(runtime: Runtime, ids: Sequence[int]) -> bool:
    """Whether passes score bit for bit as one-token steps: behind the first ``CONTEXT`` of
    ``ids``, the logits of one-token steps over the rest against those of passes of each
    length in ``PROBE_PASSES`` over the same tokens. Kernels are picked by a pass's shape,
    so every shape verification takes is probed, at every position (a tiny bf16 model's
    passes agree on their first rows and differ on two of 257). Stops at the first
    difference. On the packaged target here it finds llama.cpp's own kernels and fp32 torch
    inexact, its exact kernels and bf16 torch exact (docs/performance.md)."""
    runtime.truncate(0)
    runtime.forward(ids[:CONTEXT], keep=1)
    steps = np.concatenate([runtime.logits([token], 1) for token in ids[CONTEXT:]])
    for k in PROBE_PASSES:
        for start in range(0, len(steps), k):
            runtime.truncate(CONTEXT + start)
            tokens = ids[CONTEXT + start:CONTEXT + start + k]
            if not np.array_equal(runtime.logits(tokens, len(tokens)), steps[start:start + len(tokens)]):
                return False
    return True


def load_on(spec: str, setting: Setting, device: str | None, threads: int | None) -> models.LoadedModel:
    llama = setting.runtime == "llama.cpp"
    return models.load(spec, runtime=setting.runtime, device=device, threads=threads,
                       dtype=None if llama else setting.dtype or None, fast_kernels=llama and setting.dtype == FAST)


def other_load(threads: int) -> float:
    """Runnable processes besides a measurement on ``threads`` threads (the 1-minute load
    average less those): above ~0.5 the figures are likely inflated."""
    try:
        return max(os.getloadavg()[0] - threads, 0.0)
    except OSError:
        return 0.0


def _write(path: Path, calibration: Calibration) -> None:
    """Write atomically: a measurement cut short never leaves a file that reads as whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(calibration)))
    os.replace(tmp, path)


def table(calibration: Calibration) -> list[str]:
    """The measured costs as a Markdown table (``blazedit engine calibrate``, docs)."""
    lengths = (1, 2, 4, 8, 16, 32, 64, 128)
    lines = [f"| model | setting | {' | '.join(f'T({k})' for k in lengths)} | prefill/token | passes exact |",
             "|---|---|" + "---|" * (len(lengths) + 2)]
    for role in ("target", "draft"):
        for setting, costs in getattr(calibration, role).items():
            cells = " | ".join(f"{costs.seconds[k] * 1000:.0f}" for k in lengths)
            exact = "–" if role == "draft" else {True: "yes", False: "no", None: "not probed"}[costs.exact]
            lines.append(f"| {role} | {setting} | {cells} | {costs.prefill_per_token * 1000:.1f} | {exact} |")
    return lines


def cpu_description() -> str:
    """The CPU and the flags that decide its kernels, for every figure a benchmark prints."""
    return f"{_cpu_name()} ({' '.join(_cpu_flags()) or 'no listed flags'})"


def _cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            present = set(line.partition(":")[2].split())
            return [f for f in CPU_FLAGS if f in present]
    return []


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _model_identity(spec: str) -> str:
    """What names the weights: a packaged model's pinned hash, a file's size and time."""
    if spec in PACKAGED:
        return f"{spec} {PACKAGED[spec].sha256[:16]}"
    path = Path(spec)
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    if path.is_dir() and (path / "config.json").is_file():
        return f"{path.resolve()} {(path / 'config.json').stat().st_mtime_ns}"
    return spec
