"""The import rule, by folder: ``blazedit_lsp`` → ``engine/client/`` (torch-free) → the
model side (the rest of ``engine``), with no arrow back and no cycle, so that a laptop
runs the language server against a team's GPU daemon with the base install alone
(pyproject's `[engine]` extra holds torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "blazedit_lsp")
CLIENT = "engine.client"
"""The folder the language server may import: the engine seen from outside, no torch."""
HEAVY = ("torch", "transformers", "llama_cpp", "matplotlib", "gguf", "accelerate")
LAZY_TORCH = ("engine.daemon", "engine.completion", "engine.openai_schema", "engine.decoding.strategies",
              "engine.decoding.loop")
"""Model-side modules that load torch only inside the functions that need it: the daemon
refuses a bad address or a running twin before it loads a model."""


def in_folder(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def commands() -> list[str]:
    """The modules of pyproject's console scripts: they start on the base install."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return sorted({target.partition(":")[0] for target in scripts.values()})


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


def test_the_language_server_the_client_folder_and_the_commands_load_no_heavy_package():
    light = [name for name in modules() if (in_folder(name, "blazedit_lsp") or in_folder(name, CLIENT))
             and name != "blazedit_lsp.__main__"] + commands() + list(LAZY_TORCH)
    code = (f"import sys; import {', '.join(light)}; "
            f"loaded = [m for m in {HEAVY!r} if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)


def outside_imports(folder: str, allowed) -> dict[str, list[str]]:
    """The project modules that modules of ``folder`` import and ``allowed`` refuses."""
    known = set(modules())
    found = {name: sorted(i for i in imports(name, path, known) if not allowed(i))
             for name, path in modules().items() if in_folder(name, folder)}
    return {name: deps for name, deps in found.items() if deps}


def test_the_client_folder_imports_nothing_from_the_model_side():
    assert not outside_imports(CLIENT, lambda dep: in_folder(dep, CLIENT) or dep == "engine")


def test_the_language_server_imports_only_the_client_folder_of_the_engine():
    assert not outside_imports("blazedit_lsp", lambda dep: not in_folder(dep, "engine")
                               or in_folder(dep, CLIENT) or dep == "engine")


def test_the_engine_never_imports_the_language_server():
    assert not outside_imports("engine", lambda dep: not in_folder(dep, "blazedit_lsp"))


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
