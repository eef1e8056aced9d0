"""Real Emacs (`emacs --batch`) with eglot against the real blazedit-lsp.

Each test loads an init.el taken verbatim from docs/editors.md (the blocks between
`<!-- emacs-...:start -->` markers, with the checkout's path put in), opens a Python file
with an instruction comment, runs M-x eglot-code-actions on the comment, picks "AI edit
whole file: add type hints" and checks the buffer's final text (tests/e2e/emacs_driver.el
does the Emacs side). blazedit-lsp runs with engine "auto" and finds the scripted engine
(tests/e2e/editor_engine.py) on the default socket, so the init files need no test
settings. Debian 12 gives Emacs 28.2 with elpa-eglot 1.9 (`apt-get install emacs-nox
elpa-eglot`); Emacs 29+ has eglot built in.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("emacs_driver.el")
DOCS = ROOT / "docs" / "editors.md"
BIN = Path(sys.executable).parent
EMACS = shutil.which("emacs")
TITLE = "AI edit whole file: add type hints"


def _has_eglot() -> bool:
    if EMACS is None:
        return False
    probe = subprocess.run([EMACS, "--batch", "--eval", "(kill-emacs (if (locate-library \"eglot\") 0 1))"],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.skipif(EMACS is None, reason="emacs is not installed (Debian: apt-get install emacs-nox elpa-eglot)"),
    pytest.mark.skipif(EMACS is not None and not _has_eglot(),
                       reason="eglot not found (Emacs 29+ has it; Emacs 28: apt-get install elpa-eglot)"),
    pytest.mark.skipif(not (BIN / "blazedit-lsp").exists() and shutil.which("blazedit-lsp") is None
                       or importlib.util.find_spec("blazedit_lsp.server") is None,
                       reason="blazedit-lsp not installed (pip install -e .)"),
]


def documented_init(name: str) -> str:
    """The elisp block of docs/editors.md between `<!-- NAME:start -->` and `<!-- NAME:end -->`."""
    block = re.search(rf"<!-- {name}:start -->\s*```elisp\n(.*?)```\s*<!-- {name}:end -->", DOCS.read_text(), re.S)
    assert block, f"docs/editors.md lost its {name} block"
    return block[1].replace("/path/to/blazedit-lsp", str(ROOT))


def run_emacs(tmp_path: Path, init: str, progress: bool, flow: str = "code-action", source: str | None = None,
              respond=None) -> tuple[dict, list]:
    """One Emacs session (emacs_driver.el) against the scripted engine (`respond`: its
    model, editor_engine.add_hints by default) editing `source` (editor_engine.SOURCE by
    default); its results and the engine's jobs. In the "commands" flow the engine holds the
    first job (the driver cancels it) and the test releases the second."""
    from editor_engine import SOURCE, add_hints, serve_fake_engine

    source = SOURCE if source is None else source
    (tmp_path / "init.el").write_text(init)
    path = tmp_path / "inventory.py"
    path.write_text(source)
    line = source.splitlines().index("# AI: add type hints") + 1 if "# AI: add type hints" in source else 1
    out = tmp_path / "results.json"
    params = {"init": str(tmp_path / "init.el"), "file": str(path), "line": line, "flow": flow, "title": TITLE,
              "instruction": "add type hints", "progress": progress, "out": str(out), "connect_s": 60, "edit_s": 60}
    with serve_fake_engine(respond or add_hints) as served:
        fake = served.engine
        released: list[BaseException | None] = []
        if flow == "commands":
            fake.hold = True

            def release_second() -> None:
                try:
                    for _ in range(2):
                        job = asyncio.run_coroutine_threadsafe(fake.next_job(90), served.loop).result(120)
                    served.release(job)
                    released.append(None)
                except BaseException as e:  # reported below, after Emacs is done
                    released.append(e)

            releaser = threading.Thread(target=release_second, daemon=True)
            releaser.start()
        env = {**os.environ, "BLAZEDIT_TEST": json.dumps(params), "HOME": str(tmp_path),
               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "XDG_RUNTIME_DIR": str(served.runtime)}
        proc = subprocess.run([EMACS, "--batch", "-l", str(DRIVER)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=240, stdin=subprocess.DEVNULL)
        if flow == "commands":
            releaser.join(130)
        jobs = list(fake.jobs)
    assert out.exists(), f"Emacs wrote no results (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads(out.read_text())
    assert not results["errors"], f"{results['errors']}\n{proc.stderr[-3000:]}"
    if flow == "commands":
        assert released == [None], released
    return results, jobs


def assert_edited(results: dict, job) -> None:
    from editor_engine import add_hints

    assert TITLE in results["titles"], results["titles"]
    assert job.edit.instruction == "add type hints"
    expected = add_hints(job.edit)[0]
    assert "# AI:" not in expected and "def total(stock: dict[str, int]) -> int:" in expected
    assert results["edit_ended"], f"{job!r}\n{results['events'][-1500:]}\n{results.get('stderr')}"
    assert results["text"] == expected


def test_blazedit_el_edits_through_a_code_action_with_progress(tmp_path: Path) -> None:
    results, (job,) = run_emacs(tmp_path, documented_init("emacs-init"), progress=True)
    assert results["server_class"] == "blazedit-eglot-server"
    assert_edited(results, job)
    kinds = [p["kind"] for p in results["progress"]]
    assert kinds[0] == "begin" and "report" in kinds and kinds[-1] == "end", results["progress"]
    assert len({p["token"] for p in results["progress"]}) == 1
    assert results["progress"][0]["title"] == "Blazedit: add type hints"
    assert results["progress"][-1]["message"].endswith("applied"), results["progress"]
    assert_asked_pick_then_confirm(results["prompts"])


def assert_asked_pick_then_confirm(prompts: list[str]) -> None:
    """The user's two answers: the action (M-x eglot-code-actions), then eglot's
    confirmation of the server's edit (eglot-confirm-server-initiated-edits)."""
    assert len(prompts) == 2, prompts
    assert prompts[0].startswith(f"[eglot] Pick an action (default {TITLE})"), prompts
    assert "Server wants to edit" in prompts[1] and "inventory.py" in prompts[1], prompts


def test_plain_eglot_configuration_edits_through_a_code_action(tmp_path: Path) -> None:
    """Without clients/emacs: only `eglot-server-programs` (progress then goes to the log on eglot < 1.12)."""
    results, (job,) = run_emacs(tmp_path, documented_init("emacs-plain"), progress=False)
    assert results["server_class"] == "eglot-lsp-server"
    assert_edited(results, job)
    assert_asked_pick_then_confirm(results["prompts"])


def test_blazedit_el_commands_edit_cancel_and_edit_again(tmp_path: Path) -> None:
    """M-x blazedit-edit (typed instruction), M-x blazedit-cancel while the engine holds the
    job: the buffer stays; M-x blazedit-edit again, released: the buffer is the result."""
    from editor_engine import SOURCE, add_hints

    results, jobs = run_emacs(tmp_path, documented_init("emacs-init"), progress=True, flow="commands")
    first, second = jobs
    assert results["first_begun"] and results["first_ended"], results["progress"]
    assert first.finish_reason == "cancelled"
    assert results["after_cancel"] == SOURCE
    ends = [p for p in results["progress"] if p["kind"] == "end"]
    assert "cancel" in ends[0]["message"], ends
    assert second.edit.instruction == "add type hints"
    assert results["edit_ended"], f"{second!r}\n{results['events'][-1500:]}"
    assert results["text"] == add_hints(second.edit)[0]
    assert results["prompts"][0].startswith("Blazedit instruction"), results["prompts"]


def test_review_reject_one_through_a_code_action_keep_one_leave_one(tmp_path: Path) -> None:
    """M-x blazedit-edit makes three hunks, shown by flymake as eglot's diagnostics; on the
    first (flymake-goto-next-error), M-x eglot-code-actions "Reject this AI change" (eglot
    asks to apply the server's edit: yes); on the next, "Keep this AI change"; the third is
    left. The diagnostics go as the hunks settle, and the buffer keeps exactly the kept and
    the left hunks."""
    from editor_engine import REVIEW_HINTS, REVIEW_SOURCE, review_hints

    results, (job,) = run_emacs(tmp_path, documented_init("emacs-init"), progress=False, flow="review",
                                source=REVIEW_SOURCE, respond=review_hints)
    assert job.edit.instruction == "add type hints"
    edited = review_hints(job.edit)[0]
    assert results["edit_ended"], (results["shown"], results["events"][-3000:])
    assert results["edited"] == edited
    hunks = [edited.splitlines().index(new) + 1 for new in REVIEW_HINTS.values()]
    assert results["shown"] == [[line, f"blazedit: AI change {i}/3: replaced 1 line"]
                                for i, line in enumerate(hunks, 1)], results["shown"]

    rejected, kept = results["rejected"], results["kept"]
    assert rejected["line"] == hunks[0] and rejected["settled"], rejected
    assert rejected["diagnostics"] == [f"blazedit: AI change {i}/2: replaced 1 line" for i in (1, 2)]
    first_old, first_new = next(iter(REVIEW_HINTS.items()))
    assert rejected["text"] == edited.replace(first_new, first_old)
    assert kept["line"] == hunks[1] and kept["settled"], kept
    assert kept["diagnostics"] == ["blazedit: AI change 1/1: replaced 1 line"]
    expected = REVIEW_SOURCE
    for old in list(REVIEW_HINTS)[1:]:
        expected = expected.replace(old, REVIEW_HINTS[old])
    assert kept["text"] == results["text"] == expected
    # the user's answers: the instruction, eglot's confirmation of the edit, the reject's
    # action and its edit's confirmation, the keep's action (no edit: no confirmation)
    prompts = results["prompts"]
    assert prompts[0].startswith("Blazedit instruction") and "Server wants to edit" in prompts[1], prompts
    assert prompts[2].startswith("[eglot] Pick an action") and "Server wants to edit" in prompts[3], prompts
    assert prompts[4].startswith("[eglot] Pick an action") and len(prompts) == 5, prompts
