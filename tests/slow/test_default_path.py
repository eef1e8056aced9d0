"""README command 1, as a user runs it: the default path (no --runtime) is the runtime the
machine's calibration chose, it is measured once and never at a later load, and it writes
the same text run after run: proposal lengths come from the kept calibration and from
acceptance alone, never from live timings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ["edit", "docs/examples/inventory.py", "-i", "add type hints and docstrings"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _blazedit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)


def test_the_readme_example_gives_the_same_text_three_runs_in_a_row():
    runs = [_blazedit("-v", *EXAMPLE, "--json") for _ in range(3)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    texts = [json.loads(run.stdout)["text"] for run in runs]
    assert texts[0] != (ROOT / "docs" / "examples" / "inventory.py").read_text()  # an edit was made
    assert texts[1] == texts[0] and texts[2] == texts[0]
    for run in runs[1:]:  # the calibration is kept: no timing at a later load
        assert "calibrating this machine" not in run.stderr
        assert "runtime: " in run.stderr and "predicted" in run.stderr  # -v says what auto chose, and why


def test_calibrate_shows_the_table_and_the_choice():
    run = _blazedit("engine", "calibrate")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| target | " in run.stdout and "| draft | " in run.stdout
    assert "runtime: " in run.stdout and "kept in " in run.stdout
