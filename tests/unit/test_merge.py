"""engine.client.merge: a reply that is part of the file, merged into it by top-level item."""

from __future__ import annotations

import pytest

from engine.client.guard import parses, removed_definitions
from engine.client.merge import describe, merge, partial_edit
from engine.client.protocol import Partial

PY = '''import os

LIMIT = 10


def load(path):
    return open(path).read()


class Inventory:
    def add(self, name):
        self.items.append(name)

    def total(self):
        return len(self.items)


def restock(inv, order):
    for name in order:
        inv.add(name)
'''

JS = '''import { readFile } from "fs";

const LIMIT = 10;

function load(path) {
  return readFile(path);
}

class Inventory {
  add(name) {
    this.items.push(name);
  }

  total() {
    return this.items.length;
  }
}

function restock(inv, order) {
  for (const name of order) inv.add(name);
}
'''

TS = JS.replace("function load(path)", "function load(path: string): string").replace("  add(name) {", "  add(name: string) {")

GO = '''package stock

import "os"

const Limit = 10

func Load(path string) ([]byte, error) {
	return os.ReadFile(path)
}

type Inventory struct {
	items []string
}

func (inv *Inventory) Add(name string) {
	inv.items = append(inv.items, name)
}

func (inv *Inventory) Total() int {
	return len(inv.items)
}
'''

RUST = '''use std::fs;

const LIMIT: usize = 10;

fn load(path: &str) -> String {
    fs::read_to_string(path).unwrap()
}

struct Inventory {
    items: Vec<String>,
}

impl Inventory {
    fn add(&mut self, name: String) {
        self.items.push(name);
    }

    fn total(&self) -> usize {
        self.items.len()
    }
}
'''

CASES = {  # language: (file, {kind of reply: (reply, old text, new text, what it names)})
    "python": (PY, {
        "function": ("def load(path):\n    return open(path).read().strip()\n",
                     "open(path).read()\n", "open(path).read().strip()\n", ["load()"]),
        "method": ("class Inventory:\n    def total(self):\n        return len(set(self.items))\n",
                   "return len(self.items)", "return len(set(self.items))", ["Inventory.total()"]),
        "bare method": ("def total(self):\n    return len(set(self.items))\n",
                        "return len(self.items)", "return len(set(self.items))", ["Inventory.total()"]),
        "class": (PY[PY.index("class Inventory"): PY.index("\n\n\ndef restock")].replace("append(name)", "insert(0, name)")
                  + "\n", "append(name)", "insert(0, name)", ["class Inventory"]),
    }),
    "javascript": (JS, {
        "function": ("function load(path) {\n  return readFile(path, \"utf8\");\n}\n",
                     "readFile(path);", "readFile(path, \"utf8\");", ["load()"]),
        "method": ("class Inventory {\n  total() {\n    return this.items.length + 0;\n  }\n}\n",
                   "this.items.length;", "this.items.length + 0;", ["Inventory.total()"]),
        "class": (JS[JS.index("class Inventory"): JS.index("\n\nfunction restock")].replace("push", "unshift") + "\n",
                  "push", "unshift", ["class Inventory"]),
    }),
    "typescript": (TS, {
        "function": ("function load(path: string): string {\n  return readFile(path, \"utf8\");\n}\n",
                     "readFile(path);", "readFile(path, \"utf8\");", ["load()"]),
        "method": ("class Inventory {\n  total(): number {\n    return this.items.length;\n  }\n}\n",
                   "  total() {", "  total(): number {", ["Inventory.total()"]),
    }),
    "go": (GO, {
        "function": ("func Load(path string) ([]byte, error) {\n\treturn os.ReadFile(path + \".txt\")\n}\n",
                     "os.ReadFile(path)", "os.ReadFile(path + \".txt\")", ["Load()"]),
        "method": ("func (inv *Inventory) Total() int {\n\treturn len(inv.items) + 0\n}\n",
                   "len(inv.items)\n}", "len(inv.items) + 0\n}", ["Inventory.Total()"]),
        "class": ("type Inventory struct {\n\titems []string\n\tlimit int\n}\n",
                  "items []string\n", "items []string\n\tlimit int\n", ["type Inventory"]),
    }),
    "rust": (RUST, {
        "function": ("fn load(path: &str) -> String {\n    fs::read_to_string(path).unwrap_or_default()\n}\n",
                     ".unwrap()", ".unwrap_or_default()", ["load()"]),
        "method": ("impl Inventory {\n    fn total(&self) -> usize {\n        self.items.len() + 0\n    }\n}\n",
                   "self.items.len()\n", "self.items.len() + 0\n", ["Inventory.total()"]),
        "bare method": ("fn total(&self) -> usize {\n    self.items.len() + 0\n}\n",
                        "self.items.len()\n", "self.items.len() + 0\n", ["Inventory.total()"]),
        "class": ("struct Inventory {\n    items: Vec<String>,\n    limit: usize,\n}\n",
                  "items: Vec<String>,\n", "items: Vec<String>,\n    limit: usize,\n", ["struct Inventory"]),
    }),
}


@pytest.mark.parametrize("language, kind", [(lang, kind) for lang, (_, replies) in CASES.items() for kind in replies])
def test_a_partial_reply_replaces_only_its_items(language, kind):
    before, replies = CASES[language]
    reply, old, new, items = replies[kind]
    sketch = partial_edit(before, "fix it", None, "stop", reply, language)
    assert sketch is not None and sketch.items == items
    assert sketch.text == before.replace(old, new, 1)
    assert parses(sketch.text, language) and removed_definitions(before, sketch.text, "fix it", language) == []


def test_a_whole_reply_is_no_partial_one():
    whole = PY.replace("open(path).read()", "open(path).read().strip()")
    assert partial_edit(PY, "strip it", None, "stop", whole, "python") is None
    assert partial_edit(PY, "strip it", None, "stop", PY, "python") is None


@pytest.mark.parametrize("case", ["length", "region", "asks to delete", "names what is missing"])
def test_when_a_short_reply_is_left_to_the_guard(case):
    reply = "def load(path):\n    return 1\n"
    args = {"length": ("fix", None, "length"), "region": ("fix", (0, 10), "stop"),
            "asks to delete": ("delete the other functions", None, "stop"),
            "names what is missing": ("keep only load: os LIMIT Inventory restock", None, "stop")}[case]
    instruction, region, finish = args
    assert partial_edit(PY, instruction, region, finish, reply, "python") is None


@pytest.mark.parametrize("reply, language", [
    ("def unknown():\n    return 1\n", "python"),  # matches nothing
    ("def load(path:\n", "python"),  # does not parse
    ("sub load { 1 }\n", "perl"),  # no grammar
    ("def total(self):\n    return 0\n", "python"),  # two methods named total: which one?
])
def test_an_ambiguous_reply_asks_for_an_apply_pass(reply, language):
    before = PY if "total" not in reply else PY + "\n\nclass Other:\n    def total(self):\n        return 1\n"
    if language == "perl":
        before = "sub load { 0 }\n\nsub save { 1 }\n"
    sketch = partial_edit(before, "fix", None, "stop", reply, language)
    assert sketch is not None and sketch.text is None


def test_a_new_import_goes_after_the_last_one():
    reply = "import re\n\n\ndef load(path):\n    return re.sub('x', '', open(path).read())\n"
    merged = merge(PY, reply, "python")
    assert merged.items == ["import re", "load()"]
    assert merged.text == PY.replace("import os\n", "import os\nimport re\n").replace(
        "return open(path).read()", "return re.sub('x', '', open(path).read())")


def test_crlf_files_stay_crlf():
    before = PY.replace("\n", "\r\n")
    reply = "def load(path):\r\n    return open(path).read().strip()\r\n"
    sketch = partial_edit(before, "fix load", None, "stop", reply, "mod.py")
    assert sketch.text == before.replace("open(path).read()", "open(path).read().strip()")


def test_messages_name_what_was_merged():
    assert describe(Partial(how="merged", items=["do_complete()"])) == \
        "the model replied with part of the file: applied as a partial edit of do_complete()"
    assert describe(Partial(how="merged", items=list("abcde"))).endswith("a, b, c and 2 more")
    assert "apply pass" in describe(Partial(how="apply_pass"))


def test_a_new_import_in_a_file_without_imports_goes_to_its_top():
    before = "#!/usr/bin/env python\n\nclass Inventory:\n    def total(self):\n        return 0\n\n\n" \
             "def restock(inventory):\n    return inventory.total()\n"
    reply = "from typing import Any\n\nclass Inventory:\n    def total(self) -> int:\n        return 0\n"
    sketch = partial_edit(before, "add type hints", None, "stop", reply, "inventory.py")
    assert sketch.text == "#!/usr/bin/env python\nfrom typing import Any\n\n" + before.removeprefix(
        "#!/usr/bin/env python\n").replace("def total(self):", "def total(self) -> int:")
    assert sketch.items == ["from typing import Any", "class Inventory"]
    docstring = '"""Stock."""\n\n\ndef total():\n    return 0\n\n\ndef restock():\n    return 1\n'
    sketch = partial_edit(docstring, "type it", None, "stop", "import os\n\ndef total() -> int:\n    return 0\n",
                          "stock.py")
    assert sketch.text == docstring.replace('"""Stock."""', '"""Stock."""\n\nimport os').replace(
        "def total():", "def total() -> int:")
