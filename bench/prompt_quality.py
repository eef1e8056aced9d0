"""Edit quality under prompt variants, side by side on the same loaded models.

Each variant replaces the system message and/or the text around the instruction
(engine/client/prompts.py), then every item is edited once per variant (greedy, `blazedit`, so the
output is the target's own) and judged by engine/quality.py: unchanged (no edit made),
dropped definitions, parses, and the item's own tests where it has them. With
``--retry-unchanged`` an unchanged file is asked for again, plan first, as the product does
(Edit.retry_unchanged); without it each item gets one attempt, as in the earlier runs.

    python bench/prompt_quality.py bench/data/edits-humanevalfix.jsonl --spread 24 \
        --out bench/results/prompt-quality
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from engine import quality

from engine.bench import load_items
from engine.client import prompts
from engine.local_engine import Engine

_build = prompts.build


def _instruction_first(text: str, instruction: str, path: str = "", language: str | None = None):
    """The instruction before the file: nothing of the prompt is reusable across instructions."""
    prompt = _build(text, "", path, language)
    user = prompt.messages[1]["content"]
    prompt.messages[1]["content"] = f"Instruction: {instruction.strip()}\n\n" + user.replace(
        prompts.AFTER_FILE + "\n\n", prompts.AFTER_FILE, 1)
    return prompt


README_EXAMPLE = {"id": "readme/inventory.py", "path": "docs/examples/inventory.py",
                  "instruction": "add type hints and docstrings"}

VARIANTS = {
    "current": {},
    "must-change": {"SYSTEM": (
        "You are a precise code editor. You receive a file and an instruction. Apply the instruction: "
        "make the change it asks for, even if it is small. Reply with the complete edited file in one code "
        "block. Keep every line and every definition you were not asked to change exactly as it was; never "
        "leave out or shorten any part of the file.")},
    "instruction-named-first": {"AFTER_FILE": "\n\nApply this instruction to the file above: "},
    "instruction-first": {"AFTER_FILE": "\n\n", "build": _instruction_first},
}


def run(engine: Engine, items: list[dict], variant: dict, retry_unchanged: bool = False) -> list[dict]:
    saved = {name: getattr(prompts, name) for name in variant}
    for name, value in variant.items():
        setattr(prompts, name, value)
    try:
        rows = []
        for item in items:
            engine.forget()
            start = time.perf_counter()
            *_, result = engine.edit(item["before"], item["instruction"], path=item["path"], method="blazedit",
                                     retry_unchanged=retry_unchanged)
            judged = quality.assess(item, result.text)
            rows.append({"item": item["id"], "seconds": time.perf_counter() - start, "tokens": len(result.tokens),
                         "finish_reason": result.finish_reason, "attempt": result.attempt,
                         "partial": result.partial.how if result.partial else None, **judged.__dict__})
            print(" ", rows[-1], flush=True)
        return rows
    finally:
        for name, value in saved.items():
            setattr(prompts, name, value)


def summary(rows: list[dict]) -> dict:
    def rate(key):
        known = [r[key] for r in rows if r[key] is not None]
        return sum(map(bool, known)) / len(known) if known else None
    return {"items": len(rows), "noop_rate": rate("unchanged"), "drop_rate": rate("removed"),
            "parse_rate": rate("parses"), "pass_rate": rate("tests_pass"),
            "second_attempts": sum(r.get("attempt", 1) > 1 for r in rows),
            "partial_replies": sum(r.get("partial") is not None for r in rows), "seconds": sum(r["seconds"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--spread", type=int, default=24)
    parser.add_argument("--items", nargs="+", metavar="ID", help="these items (all of them: no --spread sample)")
    parser.add_argument("--retry-unchanged", action="store_true",
                        help="ask again, plan first, when a file comes back unchanged (the product's default)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--runtime", default=None)
    parser.add_argument("--readme-example", action="store_true",
                        help="also edit docs/examples/inventory.py with the README's instruction")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    items = load_items(args.dataset, args.items, None, None if args.items else args.spread)
    if args.readme_example:
        items.append({**README_EXAMPLE, "before": Path(README_EXAMPLE["path"]).read_text()})
    engine = Engine.load(runtime=args.runtime, threads=2)
    command = "python bench/prompt_quality.py " + " ".join(
        [str(args.dataset)] + (["--items", *args.items] if args.items else ["--spread", str(args.spread)])
        + ["--variants", *args.variants, "--out", str(args.out)]
        + (["--retry-unchanged"] if args.retry_unchanged else [])
        + (["--readme-example"] if args.readme_example else [])
        + (["--runtime", args.runtime] if args.runtime else []))
    variants = {name: {key: value if isinstance(value, str) else value.__doc__ for key, value in variant.items()}
                for name, variant in VARIANTS.items() if name in args.variants}
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.variants:  # one variant after another on the same engine; written after each
        results[name] = {"rows": run(engine, items, VARIANTS[name], args.retry_unchanged)}
        results[name]["summary"] = summary(results[name]["rows"])
        print(name, json.dumps(results[name]["summary"]), flush=True)
        (args.out / "results.json").write_text(
            json.dumps({"command": command, "variants": variants, "results": results}, indent=1))

if __name__ == "__main__":
    main()
