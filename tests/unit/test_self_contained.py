"""Nothing in the repository may read a path outside it: a fresh clone must run the
README's commands, the tests and the benchmark with nothing beside it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIBLING = re.compile(r"\.\./shared\b")  # the steering folder that lies beside a developer's clone
RELATIVE = re.compile(r"(?<![\w.])((?:\.\./)+)[\w.-]+")
PARENTS = re.compile(r"__file__\)\.resolve\(\)\.parents\[(\d+)\]")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = []
    for name in names:
        path = ROOT / name
        if path.is_file() and path.suffix not in {".png", ".jsonl", ".lock"} and path.name != "package-lock.json":
            try:
                files.append((path, path.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                pass
    return files


def outside_references(path: Path, text: str) -> list[str]:
    found = [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in SIBLING.finditer(text)]
    for m in RELATIVE.finditer(text):  # relative to the file's own folder
        if not (path.parent / m.group(0)).resolve().is_relative_to(ROOT):
            found.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    depth = len(path.relative_to(ROOT).parts) - 1  # parents[depth] is the repository root
    for m in PARENTS.finditer(text):
        if path.suffix == ".py" and int(m.group(1)) > depth:
            found.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    return found


def test_no_file_refers_outside_the_repository():
    found = [ref for path, text in tracked_text_files() for ref in outside_references(path, text)]
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def test_the_check_catches_what_it_is_for():
    tests_dir = ROOT / "tests" / "unit"
    up = "../"  # the cases are assembled so that this file passes its own check
    parents = "Path(__file__).resolve().parents[{}]"
    cases = {
        f"data = '{up}shared/data/x.jsonl'": True,
        parents.format(3) + " / 'shared'": True,
        parents.format(2) + " / 'bench'": False,
        f"see {up * 3}elsewhere.txt": True,
        f"see {up * 2}README.md": False,
    }
    for text, outside in cases.items():
        assert bool(outside_references(tests_dir / "example.py", text)) == outside, text
