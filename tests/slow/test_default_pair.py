"""The default path on the real packaged models, on both runtimes: every method finishes
the file and gives the same text; speculation saves target forward passes."""

import importlib.util
import json
from pathlib import Path

import pytest

from engine.protocol import METHODS
from engine.session import Engine

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "edits-humanevalfix.jsonl"


@pytest.fixture(scope="module", params=["torch", pytest.param("llama.cpp", marks=pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"))])
def engine(request):
    engine = Engine.load(runtime=request.param, threads=2)
    assert (engine.target.runtime, engine.draft.runtime) == (request.param, request.param)
    return engine


@pytest.fixture(scope="module")
def item():
    if not DATA.exists():  # the dataset lies beside the clone; fall back to the example file
        example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "inventory.py"
        return {"before": example.read_text(), "instruction": "add a docstring to restock", "path": "inventory.py"}
    return json.loads(DATA.read_text().splitlines()[0])


def test_all_methods_agree_on_a_real_edit(engine, item):
    results = {}
    for method in METHODS:
        engine.prefix_cache = type(engine.prefix_cache)(0)  # each method pays its own prefill
        *_, results[method] = engine.edit(item["before"], item["instruction"], path=item["path"], method=method)
    regular = results["regular"]
    assert regular.finish_reason == "stop"
    assert "def " in regular.text and regular.text != item["before"]
    for method, result in results.items():
        first_diff = next((i for i, (a, b) in enumerate(zip(result.tokens, regular.tokens)) if a != b), None)
        assert result.tokens == regular.tokens, f"{method} diverges from regular at token {first_diff}"
    for method in ("pld", "blazedit"):
        assert results[method].stats.target_forward_passes < regular.stats.target_forward_passes
    assert results["blazedit"].stats.accepted > 0
