"""bench/latency.py's rows on the tiny model: attempts, the first attempt's first token,
the final end, and whether the reply was part of the file."""

import importlib.util
from pathlib import Path

from engine import models

from engine.client import merge
from engine.decoding.cost import ForwardCost
from engine.local_engine import Engine

ROOT = Path(__file__).resolve().parents[2]
ITEM = {"id": "t", "path": "t.py", "instruction": "refactor", "before": "import os\n\n\ndef f(x):\n    return x + 1\n"}


def latency():
    spec = importlib.util.spec_from_file_location("latency", ROOT / "bench" / "latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_row_separates_the_attempts(monkeypatch):
    target = models.load("tiny-random", runtime="torch")
    engine = Engine(target, target, costs=(ForwardCost.flat(), ForwardCost.flat(1e-9)))
    bench = latency()
    monkeypatch.setattr(merge, "partial_edit", lambda *args: None)  # (its replies do not parse: an apply pass)
    one = bench.timed(engine, ITEM)
    assert one["attempts"] == 1 and one["partial"] is None and one["merged"] == []
    assert 0 <= one["first_token_s"] <= one["end_s"]
    monkeypatch.setattr(merge, "partial_edit", lambda text, *args: merge.Sketch(None, []) if args[-2] != text else None)
    engine.forget()
    two = bench.timed(engine, ITEM)
    assert two["attempts"] == 2 and two["partial"] == "apply_pass"
    assert 0 <= two["first_token_s"] <= two["end_s"]  # (rounded to 10 ms: the tiny model answers in less)
