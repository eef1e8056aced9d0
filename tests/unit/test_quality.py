"""Edit quality as the benchmark records it: no-op, parse, drops and the item's own tests."""

import json
from pathlib import Path

from engine import quality

ROOT = Path(__file__).resolve().parents[2]
ITEM = json.loads((ROOT / "bench" / "data" / "edits-humanevalfix.jsonl").open().readline())


def test_the_reference_fix_passes_and_the_buggy_file_is_a_no_op_that_fails():
    fixed = quality.assess(ITEM, ITEM["after"])
    assert fixed == quality.Quality(unchanged=False, parses=True, removed=[], tests_pass=True)
    buggy = quality.assess(ITEM, ITEM["before"])
    assert buggy.unchanged and buggy.tests_pass is False


def test_broken_syntax_and_a_dropped_function_are_seen():
    item = {"before": "def a():\n    return 1\n\n\ndef b():\n    return 2\n", "instruction": "tidy", "path": "m.py"}
    dropped = quality.assess(item, "def a():\n    return 1\n")
    assert dropped.removed == ["b()"] and dropped.parses and dropped.tests_pass is None
    assert quality.assess(item, "def a(:\n").parses is False
    assert quality.assess({**item, "path": "notes.unknownlang"}, item["before"]).parses is None


def test_a_hanging_program_fails_its_tests(monkeypatch):
    monkeypatch.setattr(quality, "TEST_TIMEOUT_S", 1.0)
    assert quality.run_tests("while True:\n    pass\n", "assert True") is False
    assert quality.run_tests("x = 1\n", "assert x == 1") is True
