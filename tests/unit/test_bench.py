"""The benchmark harness on the tiny model: engine methods and transformers' generate() side by side."""

import importlib.util
import json

import pytest

from engine.cli import main

ITEMS = [
    {"id": f"t{i}", "path": "f.py", "instruction": "fix it", "before": "def f(x):\n    return x\n" * (i + 1),
     "after": "", "chars": 0, "copy_ratio": 1.0}
    for i in range(2)
]


def test_bench_writes_results_with_summary_and_identity(tmp_path, capsys):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    out = tmp_path / "out"
    methods = ["regular", "pld", "blazedit", "hf-regular", "hf-pld-10", "hf-assisted"]
    assert main(["bench", str(dataset), "--model", "tiny-random", "--methods", *methods, "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert set(data["summary"]) == set(methods)
    for method, summary in data["summary"].items():
        assert summary["p90"] <= summary["p50"] <= max(r["chars_per_second"] for r in data["records"]
                                                          if r["method"] == method)
        # float32: every method, ours and transformers', is exact; regular is the reference
        assert summary["identity_rate"] == (None if method == "regular" else 1.0)
    assert len(data["records"]) == len(ITEMS) * len(methods)
    assert all(r["oracle_seconds"] > 0 for r in data["records"])
    # methods run one after another on the same item, yet each pays its whole prefill
    assert all(r["cached_tokens"] == 0 for r in data["records"])
    assert (out / "chars_per_second.png").stat().st_size > 0
    assert "| blazedit |" in (out / "results.md").read_text()


def test_bench_refuses_unknown_methods(tmp_path, capsys):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps(ITEMS[0]) + "\n")
    assert main(["bench", str(dataset), "--model", "tiny-random", "--methods", "magic"]) == 2
    assert "unknown bench method(s) magic" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_bench_on_llama_cpp_with_its_own_baselines_and_torch_side_by_side(tmp_path):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    out = tmp_path / "out"
    methods = ["regular", "blazedit", "llama-regular", "llama-pld-10", "regular@torch", "blazedit@torch"]
    assert main(["bench", str(dataset), "--model", "tiny-random", "--runtime", "llama.cpp",
                 "--methods", *methods, "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert "llama.cpp" in data["machine"]
    assert {m: s["identity_rate"] for m, s in data["summary"].items()} == {
        **dict.fromkeys(methods, 1.0), "regular": None, "regular@torch": None}
    records = {(r["item"], r["method"]): r for r in data["records"]}
    for item in ITEMS:  # identity is judged against regular on the same runtime
        assert records[item["id"], "regular"]["identical"] is None
        assert records[item["id"], "regular@torch"]["identical"] is None
        assert records[item["id"], "llama-pld-10"]["identical"] is True
        assert records[item["id"], "blazedit@torch"]["identical"] is True


def test_spread_samples_evenly_over_copy_ratios(tmp_path):
    from engine.bench import load_items

    dataset = tmp_path / "d.jsonl"
    ratios = [0.9, 0.1, 0.5, 0.3, 0.7]
    dataset.write_text("".join(json.dumps({"id": f"r{r}", "copy_ratio": r}) + "\n" for r in ratios))
    assert [i["id"] for i in load_items(dataset, None, None, spread=3)] == ["r0.1", "r0.5", "r0.9"]
    assert [i["id"] for i in load_items(dataset, None, None, spread=1)] == ["r0.1"]
    assert len(load_items(dataset, None, None, spread=9)) == len(ratios)
    assert [i["id"] for i in load_items(dataset, None, 2)] == ["r0.9", "r0.1"]  # --limit: the first N
