"""The import rule: ``blazedit_lsp`` → the torch-free parts of ``engine`` → the torch
parts, with no arrow back and no cycle, so that a laptop runs the language server
against a team's GPU daemon with the base install alone (pyproject's `[engine]` extra
holds torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "blazedit_lsp")
HEAVY = ("torch", "transformers", "llama_cpp", "matplotlib", "gguf", "accelerate")

TORCH_FREE = (
    "engine.client.protocol", "engine.client.address", "engine.catalogue", "engine.client.guard", "engine.client.daemon_client", "engine.client.remote",
    "engine.client.errors", "engine.client.merge", "engine.client.prompts",
    "engine.cli", "engine.cli_base", "engine.daemon_cli", "engine.client.edit_progress", "engine.daemon", "engine.client.throttle",
    "engine.decoding.strategies", "engine.decoding.loop", "engine.completion", "engine.openai_schema",
)
"""What the language server, and the CLI until a command needs the engine, may import."""


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, anywhere in its body (function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_the_language_server_and_the_torch_free_engine_modules_load_no_heavy_package():
    lsp = [name for name in modules() if name.startswith("blazedit_lsp") and name != "blazedit_lsp.__main__"]
    code = (f"import sys; import {', '.join(lsp + list(TORCH_FREE))}; "
            f"loaded = [m for m in {HEAVY!r} if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)


def test_the_engine_never_imports_the_language_server():
    known = set(modules())
    offenders = {name: sorted(i for i in imports(name, path, known) if i.startswith("blazedit_lsp"))
                 for name, path in modules().items() if name.startswith("engine")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_import_graph_has_no_cycle():
    known = set(modules())
    graph = {name: imports(name, path, known) for name, path in modules().items()}
    # a package's __init__ is imported with each of its modules: that edge is no dependency
    graph = {name: {i for i in deps if not name.startswith(i + ".")} for name, deps in graph.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " → ".join(path[path.index(name):] + [name]))
        if name not in done:
            for dep in sorted(graph[name]):
                visit(dep, path + [name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])
