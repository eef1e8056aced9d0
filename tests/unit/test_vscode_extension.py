"""Build, unit-test and package the VS Code extension (clients/vscode) the way CI does.

Runs `npm ci`, `npm run compile`, `npm test` (node's built-in test runner over the pure
logic) and `npx vsce package` in a temporary copy, so the checkout stays clean.
Skipped only when npm is not installed; everything else failing is a failure.
"""

from __future__ import annotations

import json
import os
import re
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


def _server_settings() -> dict[str, tuple[object, object]]:
    """`blazedit.<key>` setting -> (msgspec type info, default) of the server's Config field."""
    config = pytest.importorskip("blazedit_lsp.config")
    import msgspec.inspect

    return {f"blazedit.{f.encode_name}": (f.type, f.default) for f in msgspec.inspect.type_info(config.Config).fields}


def _lsp_md_rows() -> dict[str, str]:
    """The Configuration table of docs/lsp.md: key -> the rest of its row."""
    text = (EXTENSION.parents[1] / "docs" / "lsp.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \|(.*)$", section, re.M)}


def test_settings_types_enums_defaults_and_minimums_match_the_server() -> None:
    """What VS Code's settings editor offers is what the server accepts: the type, an enum
    of exactly the server's values, the server's default (or null/empty for "the server's
    default"), and the server's lower bound."""
    import msgspec.inspect as mi

    properties = json.loads((EXTENSION / "package.json").read_text())["contributes"]["configuration"]["properties"]
    for name, (info, default) in _server_settings().items():
        prop = properties[name]
        optional = isinstance(info, mi.UnionType)
        if optional:
            (info,) = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if isinstance(info, mi.LiteralType):
            assert prop["type"] == "string" and sorted(prop["enum"]) == sorted(info.values), name
            assert prop["default"] == default, name
            assert len(prop.get("enumDescriptions", [])) == len(prop["enum"]) and all(prop["enumDescriptions"]), name
        elif isinstance(info, mi.StrType):
            assert prop["type"] == "string" and "enum" not in prop, name
            assert prop["default"] == ("" if default is None else default), name  # "": unset, the server's default
        elif isinstance(info, mi.BoolType):
            assert prop["type"] == "boolean" and prop["default"] == default, name
        elif isinstance(info, mi.IntType):
            assert prop["type"] in ("integer", ["integer", "null"]), name
            assert prop["default"] in (default, None), name  # null: the server's default
            assert prop["minimum"] == info.ge, name
        elif isinstance(info, mi.ListType):
            assert prop["type"] == "array" and prop["items"] == {"type": "string"}, name
            assert prop["default"] == [], name  # empty: the server's presets
        else:
            pytest.fail(f"{name}: no check for {info}")


def test_settings_descriptions_agree_with_docs_lsp_md() -> None:
    """Every server setting is described in package.json and in docs/lsp.md, and docs/lsp.md
    names each value of an enum (package.json describes each: the test above)."""
    import msgspec.inspect as mi

    properties = json.loads((EXTENSION / "package.json").read_text())["contributes"]["configuration"]["properties"]
    rows = _lsp_md_rows()
    settings = _server_settings()
    assert set(rows) == {name.removeprefix("blazedit.") for name in settings}
    for name, (info, _) in settings.items():
        prop = properties[name]
        description = prop.get("markdownDescription") or prop.get("description") or ""
        assert len(description) > 20, f"{name} has no description"
        if isinstance(info, mi.LiteralType):
            row = rows[name.removeprefix("blazedit.")]
            for value in info.values:
                assert f'"{value}"' in row, f"docs/lsp.md does not name {value!r} for {name}"


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
