"""The machine's calibration: which settings a load may take, measuring once and keeping
it, and ``auto``'s choice following the measured costs (not a fixed rule)."""

import json

import msgspec
import numpy as np
import pytest

from engine import calibration, models
from engine.calibration import Calibration, ModelCosts, Setting
from engine.decoding.cost import ForwardCost
from engine.local_engine import Engine
from engine.runtimes.base import open_runtime

LLAMA, BF16, FP32 = Setting("llama.cpp"), Setting("torch", "bf16"), Setting("torch", "fp32")
LLAMA_FAST = Setting("llama.cpp", calibration.FAST)


@pytest.fixture
def cpu_with_llama(monkeypatch):
    monkeypatch.setattr(models, "select_device", lambda device: __import__("torch").device(device or "cpu"))
    monkeypatch.setattr(models, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(models, "llama_batch_invariant", lambda: True)
    monkeypatch.setattr(models, "_cpu_has_fast_bf16", lambda: True)


def test_auto_considers_every_runtime_that_runs_the_model(cpu_with_llama, monkeypatch):
    assert calibration.candidates("qwen2.5-coder-1.5b", "auto", None, None) == [LLAMA, LLAMA_FAST, BF16, FP32]
    assert calibration.candidates("/m/model.gguf", None, "cpu", None) == [LLAMA, LLAMA_FAST, BF16, FP32]
    assert calibration.candidates("/m/hf-dir", None, "cpu", None) == [BF16, FP32]  # llama.cpp runs GGUFs only
    assert calibration.candidates("tiny-random", None, None, None) == [FP32]  # exact identity: a float32 property
    assert calibration.candidates("qwen2.5-coder-1.5b", None, None, "fp32") == [FP32]  # a dtype: torch's
    assert calibration.candidates("qwen2.5-coder-1.5b", "llama.cpp", None, None) == [LLAMA]
    assert calibration.candidates("qwen2.5-coder-1.5b", "torch", None, None) == [BF16, FP32]
    monkeypatch.setattr(models, "_cpu_has_fast_bf16", lambda: False)
    assert calibration.candidates("qwen2.5-coder-1.5b", None, None, None) == [LLAMA, LLAMA_FAST, FP32]
    monkeypatch.setattr(models, "llama_cpp_installed", lambda: False)
    assert calibration.candidates("qwen2.5-coder-1.5b", None, None, None) == [FP32]
    with pytest.raises(models.ModelError, match="unknown runtime 'onnx'"):
        calibration.candidates("tiny-random", "onnx", None, None)


def test_auto_on_a_gpu_is_torch_alone(monkeypatch):
    monkeypatch.setattr(models, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(models, "select_device", lambda device: __import__("torch").device(device or "cuda"))
    monkeypatch.setattr(models, "select_dtype", lambda dtype, device, spec: __import__("torch").bfloat16)
    assert calibration.candidates("qwen2.5-coder-1.5b", None, None, None) == [BF16]


def _costs(ms: dict[int, float], prefill_ms: float) -> ModelCosts:
    return ModelCosts({k: v / 1000 for k, v in ms.items()}, prefill_ms / 1000)


# Two machines' measured costs (docs/performance.md, REFERENCE): on an AVX-512 BF16 EPYC,
# llama.cpp's batch-invariant kernels cost k one-token steps while bf16 torch batches; on
# the other, llama.cpp's default kernels batch too and decode a token 7x faster.
EPYC_BF16 = Calibration(1, {}, 1024, target={
    "llama.cpp": _costs({1: 52, 2: 105, 4: 175, 8: 342, 16: 623, 32: 1527, 64: 3292, 128: 6188}, 26),
    "torch bf16": _costs({1: 219, 2: 222, 4: 264, 8: 290, 16: 375, 32: 512, 64: 805, 128: 1351}, 7.9),
}, draft={
    "llama.cpp": _costs({1: 19, 2: 38, 4: 70, 8: 130, 16: 250, 32: 520, 64: 1100, 128: 2200}, 9),
    "torch bf16": _costs({1: 87, 2: 83, 4: 79, 8: 95, 16: 120, 32: 163, 64: 250, 128: 444}, 4.5),
})
FAST_LLAMA = Calibration(1, {}, 1024, target={
    "llama.cpp": _costs({1: 31, 2: 51, 4: 79, 8: 130, 16: 169, 32: 302, 64: 553, 128: 1074}, 8.1),
    "torch bf16": _costs({1: 231, 2: 179, 4: 194, 8: 230, 16: 258, 32: 336, 64: 526, 128: 1028}, 6.3),
}, draft={
    "llama.cpp": _costs({1: 19, 2: 25, 4: 43, 8: 60, 16: 81, 32: 150, 64: 298, 128: 590}, 4),
    "torch bf16": _costs({1: 87, 2: 83, 4: 79, 8: 95, 16: 120, 32: 163, 64: 250, 128: 444}, 4.5),
})


def test_auto_chooses_by_the_measured_costs_not_by_a_rule():
    on_epyc = calibration.choose(EPYC_BF16, [LLAMA, BF16], [LLAMA, BF16])
    assert on_epyc.target == BF16
    elsewhere = calibration.choose(FAST_LLAMA, [LLAMA, BF16], [LLAMA, BF16])
    assert elsewhere.target == LLAMA and elsewhere.draft == LLAMA
    lines = on_epyc.describe()
    assert lines[0].startswith("runtime: torch bf16") and "predicted" in lines[0]
    assert any("llama.cpp" in line and "x)" in line for line in lines[1:])  # the others, with their ratio
    # torch is fastest for most of the mix, llama.cpp for the short rewrite: the second target
    assert on_epyc.second == LLAMA and any(line.startswith("  second target: llama.cpp") for line in lines)
    assert elsewhere.second is None  # llama.cpp is fastest for every edit of the mix there


def test_exact_takes_the_fastest_target_whose_passes_probe_exact(tmp_path, monkeypatch):
    """--exact probes the targets in order of predicted time, each once, and takes the first
    whose passes score as its one-token steps: bf16 torch where it does, else llama.cpp."""
    monkeypatch.setenv("BLAZEDIT_CACHE_DIR", str(tmp_path))
    probed = []

    def probe(runtime, ids):
        probed.append(runtime)
        return len(probed) > 1  # the first probed (the fastest: bf16 torch) rounds differently

    monkeypatch.setattr(calibration, "load_on", lambda spec, setting, device, threads: setting)
    monkeypatch.setattr(calibration, "open_runtime", lambda setting: setting)
    monkeypatch.setattr(calibration, "_ordinary_tokens", lambda loaded, count: [])
    monkeypatch.setattr(calibration, "batch_invariant", probe)
    measured = msgspec.structs.replace(EPYC_BF16, key={"cpu": "test"})
    measured.target = {k: msgspec.structs.replace(v) for k, v in measured.target.items()}
    notes = []
    chosen = calibration.fastest_exact("m", [LLAMA, BF16], [LLAMA], measured, device=None, threads=1,
                                       notify=notes.append)
    assert probed == [BF16, LLAMA] and chosen == LLAMA
    assert measured.target["torch bf16"].exact is False and measured.target["llama.cpp"].exact is True
    assert notes[0].startswith("probing whether m on torch bf16 verifies exactly") and "about" in notes[0]
    assert calibration.load(measured.key).target["torch bf16"].exact is False  # kept: never probed again
    assert calibration.fastest_exact("m", [LLAMA, BF16], [LLAMA], measured, device=None, threads=1) == LLAMA
    assert len(probed) == 2
    choice = calibration.choose_for("m", [LLAMA, BF16], [LLAMA], measured, exact=True, device=None, threads=1)
    assert choice.target == LLAMA and len(probed) == 2
    assert choice.second is None and choice.describe()[-1].startswith("  exact: llama.cpp's passes score bit for bit")
    measured.target["llama.cpp"].exact = False
    with pytest.raises(models.ModelError, match="--exact: no target setting here"):
        calibration.fastest_exact("m", [LLAMA, BF16], [LLAMA], measured, device=None, threads=1)
    assert "| target | torch bf16 |" in "\n".join(calibration.table(measured)) and \
        calibration.table(measured)[2].endswith("| no |")


class RoundsOneRowApart:
    """A runtime whose passes of ``length`` tokens score the token at ``position`` one float
    step apart from its one-token step (as a tiny bf16 model's 8+ token passes did, at 2 of
    257 positions, all past the first 240)."""

    def __init__(self, runtime, length: int, position: int):
        self.runtime, self.length, self.position = runtime, length, position

    def forward(self, tokens, keep):
        return self.runtime.forward(tokens, keep)

    def truncate(self, length):
        self.runtime.truncate(length)

    def logits(self, tokens, keep):
        rows = self.runtime.logits(tokens, keep)
        row = self.position - (self.runtime.cached - keep)
        if len(tokens) == self.length and 0 <= row < keep:
            rows[row, 0] = np.nextafter(rows[row, 0], np.inf)
        return rows


def test_the_probe_finds_one_row_of_one_pass_shape_that_rounds_apart(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    if not models.llama_batch_invariant():
        pytest.skip("this llama.cpp is built with llamafile's sgemm: its passes are not exact")
    monkeypatch.setenv("BLAZEDIT_CACHE_DIR", str(tmp_path))
    loaded = calibration.load_on("tiny-random", LLAMA, None, 1)  # llama.cpp's exact kernels
    ids = calibration._ordinary_tokens(loaded, calibration.CONTEXT + 257)
    assert calibration.batch_invariant(open_runtime(loaded), ids)
    assert not calibration.batch_invariant(RoundsOneRowApart(open_runtime(loaded), 16, calibration.CONTEXT + 250), ids)
    assert not calibration.batch_invariant(RoundsOneRowApart(open_runtime(loaded), 257, calibration.CONTEXT + 3), ids)


def test_prediction_follows_the_edit():
    long_copy, short_rewrite = calibration.MixEdit(1200, 1200, 0.99), calibration.MixEdit(250, 120, 0.3)
    llama, torch_ = EPYC_BF16.target["llama.cpp"], EPYC_BF16.target["torch bf16"]
    # copying pays off on batched passes; writing token by token on cheap single steps
    assert calibration.predict_seconds(torch_, None, long_copy) < calibration.predict_seconds(llama, None, long_copy)
    assert calibration.predict_seconds(llama, None, short_rewrite) < calibration.predict_seconds(torch_, None,
                                                                                                 short_rewrite)


def test_a_calibration_is_measured_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("BLAZEDIT_CACHE_DIR", str(tmp_path))
    notes = []
    first = calibration.ensure("tiny-random", "tiny-random", [FP32], [FP32], device="cpu", threads=1,
                               notify=notes.append)
    assert set(first.target) == set(first.draft) == {"torch fp32"}
    assert first.target["torch fp32"].seconds[1] > 0 and first.target["torch fp32"].prefill_per_token > 0
    assert "calibrating this machine" in notes[0] and str(calibration.path_for(first.key)) in notes[0]
    stored = json.loads(calibration.path_for(first.key).read_text())
    assert stored["key"]["cpu"] == first.key["cpu"] and stored["key"]["threads"] == "1"

    def no_timing(*args, **kwargs):
        raise AssertionError("a kept calibration is not measured again")

    monkeypatch.setattr(calibration, "measure", no_timing)
    again = calibration.ensure("tiny-random", "tiny-random", [FP32], [FP32], device="cpu", threads=1)
    assert again.target["torch fp32"].seconds == first.target["torch fp32"].seconds
    with pytest.raises(AssertionError, match="not measured again"):  # another thread count: another machine
        calibration.ensure("tiny-random", "tiny-random", [FP32], [FP32], device="cpu", threads=2)
    with pytest.raises(AssertionError, match="not measured again"):
        calibration.ensure("tiny-random", "tiny-random", [FP32], [FP32], device="cpu", threads=1, force=True)
    calibration.path_for(first.key).write_text("{not json")  # a damaged file is measured again
    with pytest.raises(AssertionError, match="not measured again"):
        calibration.ensure("tiny-random", "tiny-random", [FP32], [FP32], device="cpu", threads=1)


def test_engine_load_takes_its_costs_from_the_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("BLAZEDIT_CACHE_DIR", str(tmp_path))
    first = Engine.load("tiny-random", threads=1)
    assert first.choice.target == FP32 and first.target.runtime == "torch"

    def no_timing(*args, **kwargs):
        raise AssertionError("no timing at load")

    monkeypatch.setattr(ForwardCost, "measure", no_timing)
    monkeypatch.setattr(calibration, "measure", no_timing)
    second = Engine.load("tiny-random", threads=1)
    assert [second.target_cost(k) for k in (1, 16, 128)] == [first.target_cost(k) for k in (1, 16, 128)]
    assert second.target_model.learns is None  # torch: a timing must not change the schedule


def test_observed_passes_refine_the_cost_and_keep_it_monotone():
    cost = ForwardCost({1: 0.05, 16: 0.6, 128: 6.0})
    for _ in range(50):
        cost.observe(16, 0.3)  # this machine runs 16-token passes twice as fast as measured
    assert 0.29 < cost(16) < 0.31
    assert cost(1) <= cost(16) <= cost(128)
    for _ in range(50):
        cost.observe(16, 10.0)  # slower than the longest: the longer ones rise with it
    assert cost(16) <= cost(128)
    cost.observe(1000, 0.0)  # beyond the measured lengths: ignored
    assert cost(128) >= cost(16)


def test_llama_cpp_runs_fast_kernels_as_a_setting_of_its_own(tmp_path, monkeypatch):
    """llama.cpp's own kernels (repacked weights, flash attention) are measured and may be
    chosen, but never count as exact, so a target on them never learns from timings."""
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("BLAZEDIT_CACHE_DIR", str(tmp_path))
    fast = calibration.load_on("tiny-random", LLAMA_FAST, None, 1)
    exact = calibration.load_on("tiny-random", LLAMA, None, 1)
    assert fast.model.fast_kernels and not fast.exact
    assert not exact.model.fast_kernels and exact.exact == models.llama_batch_invariant()
    measured = calibration.ensure("tiny-random", None, [LLAMA, LLAMA_FAST], [], device="cpu", threads=1)
    assert set(measured.target) == {"llama.cpp", "llama.cpp fast"}
    engine = Engine(fast, None, costs=(measured.target["llama.cpp fast"].forward_cost(), None))
    assert engine.target_model.learns is None
    assert len(engine.target_model.runtime.forward(list(range(40, 60)), keep=20)) == 20
