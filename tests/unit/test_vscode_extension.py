"""Build, unit-test and package the VS Code extension (clients/vscode) the way CI does.

Runs `npm ci`, `npm run compile`, `npm test` (node's built-in test runner over the pure
logic) and `npx vsce package` in a temporary copy, so the checkout stays clean.
Skipped only when npm is not installed; everything else failing is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[2] / "clients" / "vscode"
NPM = shutil.which("npm")
NPX = shutil.which("npx")

needs_npm = pytest.mark.skipif(NPM is None or NPX is None, reason="npm/npx not installed (Node 20+ is needed)")


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the extension after `npm ci` and `npm run compile`."""
    work = tmp_path_factory.mktemp("vscode") / "vscode"
    shutil.copytree(EXTENSION, work, ignore=shutil.ignore_patterns("node_modules", "out", "*.vsix"))
    run([NPM, "ci"], work)
    run([NPM, "run", "compile"], work)
    return work


def test_lockfile_is_committed_and_matches_the_manifest() -> None:
    lock = json.loads((EXTENSION / "package-lock.json").read_text())
    manifest = json.loads((EXTENSION / "package.json").read_text())
    root = lock["packages"][""]
    assert root["dependencies"] == manifest["dependencies"]
    assert root["devDependencies"] == manifest["devDependencies"]


def test_settings_are_the_servers_configuration_keys() -> None:
    """Every server key has a `blazedit.<key>` setting and every other setting is client-side."""
    config = pytest.importorskip("blazedit_lsp.config")
    import msgspec

    properties = json.loads((EXTENSION / "package.json").read_text())["contributes"]["configuration"]["properties"]
    keys = {name.removeprefix("blazedit.") for name in properties}
    client_side = {k for k in keys if k.startswith(("server.", "trace."))}
    assert client_side == {"server.path", "server.args", "trace.server"}
    assert keys - client_side == {f.encode_name for f in msgspec.structs.fields(config.Config)}


@needs_npm
def test_compile_emits_the_extension_entry_point(built: Path) -> None:
    manifest = json.loads((built / "package.json").read_text())
    assert (built / manifest["main"]).is_file()


@needs_npm
def test_pure_logic_under_node_test_runner(built: Path) -> None:
    proc = run([NPM, "test"], built)
    assert "# fail 0" in proc.stdout, proc.stdout[-2000:]


@needs_npm
def test_vsce_package_produces_a_vsix(built: Path) -> None:
    run([NPX, "vsce", "package", "--allow-missing-repository", "--out", "blazedit.vsix"], built)
    vsix = built / "blazedit.vsix"
    assert vsix.is_file()
    names = set(zipfile.ZipFile(vsix).namelist())
    assert {"extension/package.json", "extension/out/extension.js", "extension/out/logic.js"} <= names
    assert any(n.startswith("extension/node_modules/vscode-languageclient/") for n in names)
    assert not any(n.startswith(("extension/src/", "extension/out/test/")) for n in names)
