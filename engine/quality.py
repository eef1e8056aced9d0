"""What an edit's output is worth, next to how fast it came: did the model change the
file at all, does the result parse, did it drop definitions (guard.py), and, where the
item carries its own tests (HumanEvalFix), do they pass. The benchmark records these per
item and method; speed alone would reward a model that returns the file unchanged."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.client import guard

TEST_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Quality:
    unchanged: bool  # the output is the input file: the edit did not happen
    parses: bool | None  # None: no grammar for the language
    removed: list[str]  # definitions dropped that the instruction does not name
    tests_pass: bool | None  # None: the item has no tests


def assess(item: dict, text: str) -> Quality:
    before, path = item["before"], item.get("path", "")
    removals = guard.removed_definitions(before, text, item["instruction"], path)
    return Quality(
        unchanged=text == before,
        parses=guard.parses(text, path),
        removed=[str(r.definition) for r in removals],
        tests_pass=run_tests(text, item["test"]) if item.get("test") else None,
    )


def run_tests(program: str, test: str) -> bool:
    """Run the item's test code after the program in a fresh interpreter (isolated, no
    site packages of ours needed); a crash, a failed assert or a hang is a failure."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "check.py"
        script.write_text(program + "\n\n" + test + "\n")
        try:
            done = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp, capture_output=True,
                                  timeout=TEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0
