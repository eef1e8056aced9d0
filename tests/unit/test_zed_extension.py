"""The Zed extension (clients/zed) agrees with the server and with docs/editors.md.

Zed extensions compile to WebAssembly against the `zed_extension_api` crate, which cannot be
fetched here; these checks cover what can go wrong without a compiler: the manifest's shape,
the language server id shared by extension.toml, src/lib.rs and the docs, the languages, and
the server binary name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
ZED = ROOT / "clients" / "zed"
DOCS = ROOT / "docs" / "editors.md"


def language_table() -> list[dict[str, str]]:
    """Rows of the language table between the `languages:start/end` markers of docs/editors.md."""
    text = DOCS.read_text()
    match = re.search(r"<!-- languages:start -->\n(.*?)<!-- languages:end -->", text, re.S)
    assert match, "docs/editors.md lost its <!-- languages:start/end --> table"
    lines = [line.strip() for line in match.group(1).strip().splitlines()]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    return [dict(zip(header, row, strict=True)) for row in rows]


def rust_const(name: str) -> str:
    source = (ZED / "src" / "lib.rs").read_text()
    match = re.search(rf'const {name}: &str = "([^"]+)";', source)
    assert match, f"src/lib.rs has no `const {name}: &str`"
    return match.group(1)


@pytest.fixture(scope="module")
def manifest() -> dict:
    with (ZED / "extension.toml").open("rb") as f:
        return tomllib.load(f)


def test_manifest_has_the_required_fields(manifest: dict) -> None:
    for key in ("id", "name", "version", "schema_version", "authors", "description"):
        assert key in manifest, key
    assert manifest["schema_version"] == 1
    assert re.fullmatch(r"[a-z0-9-]+", manifest["id"])


def test_one_language_server_whose_id_is_the_one_lib_rs_uses(manifest: dict) -> None:
    servers = manifest["language_servers"]
    assert list(servers) == [rust_const("SERVER_ID")]
    entry = servers[rust_const("SERVER_ID")]
    assert "language" not in entry, "use `languages` (a list); `language` is deprecated"
    assert entry["name"]


def test_languages_match_the_docs(manifest: dict) -> None:
    (entry,) = manifest["language_servers"].values()
    assert entry["languages"] == [row["Zed name"] for row in language_table()]


def test_no_code_action_kinds_that_could_hide_the_servers(manifest: dict) -> None:
    """Zed drops actions whose kind is not one it asked for; the server advertises its own."""
    (entry,) = manifest["language_servers"].values()
    assert "code_action_kinds" not in entry


def test_binary_is_the_servers_console_script() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert rust_const("SERVER_BINARY") in scripts


def test_docs_name_the_same_settings_key() -> None:
    assert f'"lsp": {{\n    "{rust_const("SERVER_ID")}": {{' in DOCS.read_text()


def test_cargo_manifest_builds_a_wasm_library_against_the_extension_api(manifest: dict) -> None:
    with (ZED / "Cargo.toml").open("rb") as f:
        cargo = tomllib.load(f)
    assert cargo["lib"]["crate-type"] == ["cdylib"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", cargo["dependencies"]["zed_extension_api"])
    assert cargo["package"]["version"] == manifest["version"]


def test_lib_rs_implements_the_documented_trait_methods() -> None:
    source = (ZED / "src" / "lib.rs").read_text()
    assert "impl zed::Extension for" in source
    assert "zed::register_extension!(" in source
    for method in (
        "language_server_command",
        "language_server_initialization_options",
        "language_server_workspace_configuration",
    ):
        assert re.search(rf"fn {method}\(\s*&mut self,\s*_?language_server_id: &LanguageServerId,", source), method
