"""engine.client.guard: definitions an edit removed, and the edit with them kept."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from engine.client.guard import definitions, keep_removed, language_of, removed_definitions

INVENTORY = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "inventory.py").read_text()
RESTOCK = INVENTORY[INVENTORY.index("def restock"):]
TYPED = (  # the showcase edit, as a small model once wrote it: type hints, docstrings, and no restock()
    INVENTORY[: INVENTORY.index("\n\n\ndef restock") + 1]
    .replace("def add(self, name, count):", 'def add(self, name: str, count: int) -> None:\n        """Add stock."""')
    .replace("def total(self):", 'def total(self) -> int:\n        """Units in stock."""')
)


def removed(before: str, after: str, instruction: str = "add type hints", language: str | None = "python"):
    return [(str(r.definition), r.definition.lines, r.cut_off)
            for r in removed_definitions(before, after, instruction, language)]


def only_inserts(after: str, kept: str) -> bool:
    """``kept`` is ``after`` with lines inserted: the rest of the edit is intact."""
    matcher = difflib.SequenceMatcher(None, after.splitlines(), kept.splitlines(), autojunk=False)
    return all(tag in ("equal", "insert") for tag, *_ in matcher.get_opcodes())


# ------------------------------------------------------------------ finding removals


def test_the_showcase_removal_is_found_and_kept():
    [removal] = removed_definitions(INVENTORY, TYPED, "add type hints and docstrings", "docs/examples/inventory.py")
    assert str(removal) == "restock() (lines 22-25; the result stops before it)"
    assert (removal.definition.kind, removal.definition.qualified) == ("function", "restock")
    assert INVENTORY[slice(*removal.definition.span)] == RESTOCK.rstrip("\n")
    assert keep_removed(INVENTORY, TYPED, [removal]) == TYPED + "\n\n" + RESTOCK


def test_nothing_removed_nothing_reported():
    assert removed(INVENTORY, TYPED + "\n\n" + RESTOCK) == []
    assert removed(INVENTORY, INVENTORY) == []


def test_a_method_in_a_class():
    body = INVENTORY[INVENTORY.index("    def remove"): INVENTORY.index("    def total")]
    after = INVENTORY.replace(body, "")
    assert removed(INVENTORY, after) == [("Inventory.remove()", (10, 16), False)]
    assert keep_removed(INVENTORY, after, removed_definitions(INVENTORY, after, "x", "python")) == INVENTORY


def test_a_removed_class_is_reported_once_not_per_method():
    after = RESTOCK
    assert removed(INVENTORY, after) == [("class Inventory", (1, 19), False)]


def test_a_renamed_function_is_a_removal_unless_the_instruction_names_it():
    after = INVENTORY.replace("def restock(", "def refill(")
    assert removed(INVENTORY, after, "tidy up") == [("restock()", (22, 25), False)]
    assert removed(INVENTORY, after, "rename restock to refill") == []
    assert removed(INVENTORY, after, "rename Restock to refill") == [("restock()", (22, 25), False)]  # case matters
    assert removed(INVENTORY, after, "rename restocking") == [("restock()", (22, 25), False)]  # whole words


def test_naming_a_class_covers_its_methods():
    after = INVENTORY.replace("class Inventory:", "class Stock:")
    assert removed(INVENTORY, after, "tidy up") == [("class Inventory", (1, 19), False)]
    assert removed(INVENTORY, after, "rename Inventory to Stock") == []


def test_a_result_that_stops_early_is_flagged_even_when_the_instruction_names_what_it_lost():
    assert removed(INVENTORY, TYPED, "add a docstring to restock") == [("restock()", (22, 25), True)]
    assert removed(INVENTORY, TYPED, "remove restock") == []  # asked for, and done
    lost_middle = INVENTORY.replace(INVENTORY[INVENTORY.index("    def total"): INVENTORY.index("\n\n\ndef")], "")
    assert removed(INVENTORY, lost_middle) == [("Inventory.total()", (18, 19), False)]  # not at the end: not cut


def test_an_empty_result_removes_everything():
    assert removed(INVENTORY, "") == [("class Inventory", (1, 19), True), ("restock()", (22, 25), True)]
    assert keep_removed(INVENTORY, "", removed_definitions(INVENTORY, "", "x", "python")) == INVENTORY


# ------------------------------------------------------------------ other languages


TS = """\
import { Item } from "./item";

export interface Stock { total(): number }

/** Adds up an order. */
export const sum = (order: Item[]) => order.reduce((n, i) => n + i.count, 0);

export class Inventory implements Stock {
  private items = new Map<string, number>();

  add(name: string, count: number): void {
    this.items.set(name, (this.items.get(name) ?? 0) + count);
  }

  total(): number {
    return [...this.items.values()].reduce((a, b) => a + b, 0);
  }
}

function restock(inventory: Inventory, order: Item[]): number {
  for (const item of order) inventory.add(item.name, item.count);
  return inventory.total();
}
"""

GO = """\
package stock

// Inventory counts items.
type Inventory struct {
\titems map[string]int
}

// Add adds count items.
func (inv *Inventory) Add(name string, count int) {
\tinv.items[name] += count
}

func (inv *Inventory) Total() int {
\ttotal := 0
\tfor _, n := range inv.items {
\t\ttotal += n
\t}
\treturn total
}

func Restock(inv *Inventory, order map[string]int) int {
\tfor name, n := range order {
\t\tinv.Add(name, n)
\t}
\treturn inv.Total()
}
"""


@pytest.mark.parametrize("language, text, names", [
    ("typescript", TS, ["interface Stock", "sum()", "class Inventory", "Inventory.add()", "Inventory.total()",
                        "restock()"]),
    ("javascript", "export default class A {\n  m() {}\n}\nconst f = function () {};\nlet x = 1;\n",
     ["class A", "A.m()", "f()"]),
    ("go", GO, ["type Inventory", "Inventory.Add()", "Inventory.Total()", "Restock()"]),
    ("rust", "#[derive(Debug)]\nstruct S;\nimpl std::fmt::Display for S {\n    fn fmt(&self) {}\n}\nfn main() {}\n",
     ["struct S", "impl std::fmt::Display for S", "S.fmt()", "main()"]),
    ("c", "#include <x.h>\nstatic int *add(int a) { return 0; }\ntypedef struct { int y; } pt;\n"
          "#ifdef X\nvoid g(void) {}\n#endif\n",
     ["add()", "type pt", "g()"]),
    ("cpp", "namespace n {\nclass K {\n  int m() { return 1; }\n};\nint K::t() { return 0; }\n}\n",
     ["namespace n", "class n.K", "n.K.m()", "n.K.t()"]),
    ("java", "class A {\n  A() {}\n  @Override\n  public int m() { return 1; }\n  class B {}\n}\n",
     ["class A", "A.A()", "A.m()", "class A.B"]),
    ("ruby", "class A\n  def m\n    1\n  end\nend\n\ndef f\n  def inner; end\nend\n", ["class A", "A.m()", "f()"]),
])
def test_definitions_per_language(language, text, names):
    found = definitions(text, language)
    assert [str(d) for d in found] == names
    lines = text.splitlines()
    for d in found:  # the span is the text of its lines, from the first one's indentation
        own, region = text[slice(*d.span)], "\n".join(lines[d.lines[0] - 1: d.lines[1]])
        assert region.lstrip().startswith(own) and own.count("\n") == d.lines[1] - d.lines[0]


def test_typescript_method_removal_is_found_and_kept():
    body = TS[TS.index("  total(): number"): TS.index("}\n\nfunction")]
    after = TS.replace(body, "").replace("restock(", "refill(")
    assert removed(TS, after, "rename restock to refill", "src/stock.ts") == [("Inventory.total()", (15, 17), False)]
    kept = keep_removed(TS, after, removed_definitions(TS, after, "rename restock to refill", "src/stock.ts"))
    assert body.rstrip("\n") in kept and only_inserts(after, kept)
    assert removed(TS, kept, "rename restock to refill", "typescript") == []


def test_go_function_removal_keeps_its_doc_comment():
    add = GO[GO.index("// Add adds"): GO.index("func (inv *Inventory) Total")]
    after = GO.replace(add, "").replace("\tinv.items[name]", "\tinv.items[name]")
    [removal] = removed_definitions(GO, after, "simplify Total", "go")
    assert str(removal) == "Inventory.Add() (lines 8-11)"
    assert keep_removed(GO, after, [removal]) == GO


def test_a_language_without_a_grammar_gets_the_heuristic():
    ruby = "class Stock\n  def add(n)\n    @n = n\n  end\n\n  def total\n    @n\n  end\nend\n"
    after = ruby.replace("  def total\n    @n\n  end\n", "").replace("\n\nend", "\nend")
    assert removed(ruby, after, "x", "stock.rb") == [("Stock.total()", (6, 8), False)]
    assert keep_removed(ruby, after, removed_definitions(ruby, after, "x", "stock.rb")) == ruby


@pytest.mark.parametrize("hints, language", [
    (("python",), "python"), (("typescriptreact",), "tsx"), (("C++",), "cpp"), (("plaintext", "a/b.rs"), "rust"),
    (("", None, "x.JAVA"), "java"), (("ruby", "x.rb"), None), ((None,), None),
])
def test_language_of(hints, language):
    assert language_of(*hints) == language


# ------------------------------------------------------------------ text that is awkward


UNICODE = "# 😀 中文 ünï 𝄞\n\n\ndef f(s='😀😀'):  # 中\n    return s + '𝄞'\n\n\ndef g():\n    return '𝄞'\n"


def test_non_bmp_text_keeps_exact_spans_and_is_kept_byte_for_byte():
    f, g = definitions(UNICODE, "python")
    assert UNICODE[slice(*f.span)] == "def f(s='😀😀'):  # 中\n    return s + '𝄞'"
    assert UNICODE[slice(*g.span)] == "def g():\n    return '𝄞'"
    after = UNICODE.replace("def f(s='😀😀'):  # 中\n    return s + '𝄞'\n\n\n", "")
    [removal] = removed_definitions(UNICODE, after, "x", "python")
    assert str(removal) == "f() (lines 4-5)"
    assert keep_removed(UNICODE, after, [removal]) == UNICODE


def test_crlf_and_a_missing_final_newline():
    before = "def a():\r\n    return 1\r\n\r\n\r\ndef b():\r\n    return 2"
    after = "def a():\r\n    return 1  # one"
    [removal] = removed_definitions(before, after, "comment a", "python")
    assert removal.definition.qualified == "b" and not removal.cut_off
    kept = keep_removed(before, after, [removal])
    assert kept == "def a():\r\n    return 1  # one\r\n\r\n\r\ndef b():\r\n    return 2"


def test_a_syntax_error_in_the_result_does_not_invent_removals():
    broken = INVENTORY.replace("def add(self, name, count):", "def add(self, name, count:")  # hides remove()
    assert removed(INVENTORY, broken, "tidy up") == []
    without_restock = broken[: broken.index("\n\n\ndef restock") + 1]
    assert removed(INVENTORY, without_restock, "tidy up") == [("restock()", (22, 25), True)]


def test_text_that_does_not_parse_at_all():
    garbage = "\x00\x01 ((( }}} def\n\ufffd\ud800 class"  # NUL, replacement char, lone surrogate
    assert definitions(garbage, "python") == [] and definitions(garbage, "go") == []
    assert removed(garbage, "", "x") == [] and removed(INVENTORY, garbage, "x") == [
        ("class Inventory", (1, 19), False), ("restock()", (22, 25), False)]


def test_the_module_imports_no_model_runtime():
    """The language server imports it, and must never import torch."""
    code = ("import sys, engine.client.guard; loaded = {'torch', 'transformers', 'llama_cpp'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------ top-level statements


MODULE = '''"""Stock keeping."""

import os
from typing import Dict

LIMIT = 10
registry: Dict[str, int] = {}


@cache
def restock(n):
    return min(n, LIMIT)


if __name__ == "__main__":
    restock(os.cpu_count())
'''
RESTOCK_ONLY = MODULE[MODULE.index("@cache"): MODULE.index("\n\n\nif")].replace("min(n", "max(n") + "\n"


def test_every_top_level_statement_is_guarded_and_named():
    assert removed(MODULE, RESTOCK_ONLY, "fix restock") == [
        ("the module docstring", (1, 1), False), ("import os", (3, 3), False),
        ("from typing import Dict", (4, 4), False), ("LIMIT = 10", (6, 6), False),
        ("registry: Dict[str, int] = {}", (7, 7), False), ('if __name__ == "__main__":', (15, 16), False)]
    kinds = [(r.definition.kind, r.definition.name)
             for r in removed_definitions(MODULE, RESTOCK_ONLY, "fix restock", "python")]
    assert kinds == [("docstring", "docstring"), ("import", "import os"), ("import", "from typing import Dict"),
                     ("assignment", "LIMIT"), ("assignment", "registry"),
                     ("statement", 'if __name__ == "__main__":')]
    assert [str(d) for d in definitions(MODULE, "python")] == ["restock()"]  # the decorator is restock's


def test_keep_restores_statements_in_place():
    kept = keep_removed(MODULE, RESTOCK_ONLY, removed_definitions(MODULE, RESTOCK_ONLY, "fix restock", "python"))
    assert kept == MODULE.replace("min(n", "max(n")
    compile(kept, "module.py", "exec")


def test_an_import_is_present_while_its_names_are_imported():
    grown = MODULE.replace("import os\n", "import os, sys\n").replace("import Dict", "import Dict, List")
    assert removed(MODULE, grown) == []
    split = MODULE.replace("from typing import Dict", "import typing\nfrom typing import Dict as Dict")
    assert removed(MODULE, split) == []
    assert removed(MODULE, MODULE.replace("import os\n", "")) == [("import os", (3, 3), False)]
    assert removed(MODULE, MODULE.replace("import os\n", ""), "drop the os import") == []
    assert removed(MODULE, MODULE.replace("LIMIT = 10", "LIMIT = 12")) == []
    assert removed(MODULE, MODULE.replace("LIMIT = 10", "CAP = 10")) == [("LIMIT = 10", (6, 6), False)]


@pytest.mark.parametrize("language, text, shown", [
    ("javascript", 'import { a } from "./a";\nconst LIMIT = 3;\nexport let n = 0;\nconst f = () => 1;\n',
     ['import { a } from "./a";', "const LIMIT = 3;", "export let n = 0;"]),
    ("go", 'package stock\n\nimport (\n\t"fmt"\n)\n\nconst Limit = 3\n\nfunc F() {}\n',
     ["package stock", "import (", "const Limit = 3"]),
    ("rust", "use std::fmt;\n\nconst LIMIT: u32 = 3;\nstatic mut N: u32 = 0;\n\nfn f() {}\n",
     ["use std::fmt;", "const LIMIT: u32 = 3;", "static mut N: u32 = 0;"]),
])
def test_statements_in_other_languages(language, text, shown):
    after = text[text.rindex("\n", 0, len(text) - 1) + 1:]  # the last definition alone
    removals = removed_definitions(text, after, "x", language)
    assert [str(r.definition) for r in removals] == shown
    assert keep_removed(text, after, removals) == text
