"""Definitions an edit removed, and the edit with them put back.

A small model rewriting a whole file sometimes drops a function, or stops
early and leaves the rest of the file out, or answers with only the part it
changed. Nothing in the model's output says so, so we compare the definitions
(functions, methods, classes and the like, at the top level and inside
classes) and every other top-level statement (imports, assignments, the module
docstring...) before and after: one that is gone, unless the instruction names
it, is a removal the user must see. A result without its imports fails as
surely as one without a function.

Parsing is tree-sitter's, with the grammars from PyPI (nothing is downloaded
at run time); a language without a grammar gets a small indentation
heuristic. No torch here: the language server imports this module.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath

import tree_sitter

CALLABLE = ("function", "method", "constructor")
STATEMENTS = ("import", "assignment", "declaration", "docstring", "statement")
"""Kinds of the top-level items that are not definitions (tree-sitter languages only)."""
SHOWN_CHARS = 60  # of a statement's first line, in messages


@dataclass(frozen=True)
class Definition:
    name: str  # "restock"
    kind: str  # "function", "method", "class", "struct", "impl", ...
    qualified: str  # "Inventory.restock"
    lines: tuple[int, int]  # first and last line, 1-based
    span: tuple[int, int]  # text[span[0]:span[1]], with its decorators and the comments right above it
    shown: str = ""  # a statement: its first line ("import os"), what messages name it by
    names: frozenset[str] = frozenset()  # an import: the names in it; present while a result still imports them

    def __str__(self) -> str:
        if self.kind in STATEMENTS:
            return self.shown
        return f"{self.qualified}()" if self.kind in CALLABLE else f"{self.kind} {self.qualified}"


@dataclass(frozen=True)
class Removal:
    definition: Definition
    cut_off: bool
    """The result ends, on a line copied from the original, before this
    definition: the model stopped early rather than rewrote it."""

    def __str__(self) -> str:
        first, last = self.definition.lines
        where = f"line {first}" if first == last else f"lines {first}-{last}"
        return f"{self.definition} ({where}{'; the result stops before it' if self.cut_off else ''})"


ASKS_TO_DELETE = re.compile(
    r"\b(delet|remov|drop|strip|clear|eras|shorten|trim|condens|minif|simplif|reduc|cut|empt|prun|purg)", re.I
)
"""Instructions that ask for deletion (a result that stops early is then no surprise)."""

UNCHANGED = ("the model returned the file unchanged; an instruction that says what to change and where "
             "(\"rename total to subtotal in checkout()\") usually gets the edit made")
"""What the editor and the CLI say when an edit comes back as it went (docs/performance.md
measures how often: the small default model does it on vague instructions)."""

SECOND_ATTEMPT = ("the model first returned the file unchanged; this is its second attempt, "
                  "made after it said what it would change")
"""What the CLI says when the edit came from the second attempt (Edit.retry_unchanged)."""


def removed_definitions(before: str, after: str, instruction: str, language: str | None) -> list[Removal]:
    """Definitions and top-level statements of ``before`` that ``after`` lacks
    and the instruction does not name (itself or an enclosing class), outermost
    only, in document order. ``language`` is a language id ("python") or a file
    path, as for ``language_of``. An import is present while ``after``'s imports
    still hold every name in it (``import os`` -> ``import os, sys`` removes nothing).

    A definition after the point where the result stopped copying is a removal
    even when named, unless the instruction asks for deletion: "add docstrings
    to restock" must not lose restock to a model that stopped early."""
    language = language_of(language)
    (old, old_parsed), (new, new_parsed) = _parse(before, language), _parse(after, language)
    present = {(d.kind, d.qualified) for d in new}
    imported = frozenset().union(*(d.names for d in new if d.kind == "import"))
    cut = _cut_line(_lines(before), _lines(after))
    removals: list[Removal] = []
    for d in old:
        kept = d.names <= imported if d.kind == "import" else (d.kind, d.qualified) in present
        if kept or any(_inside(d, r.definition) for r in removals):
            continue
        if not (old_parsed and new_parsed) and _mentions(after, d.name):
            continue  # a syntax error can hide a definition from the parser, not its name from the text
        cut_off = cut is not None and d.lines[0] > cut
        named = _names(instruction, d) and (not cut_off or ASKS_TO_DELETE.search(instruction))
        if not named:
            removals.append(Removal(d, cut_off))
    return removals


def keep_removed(before: str, after: str, removals: list[Removal]) -> str:
    """``after`` with each removed definition's (or statement's) original lines
    put back where the edit dropped them: after the last line that the result
    copied from before it, past the rest of that line's block; removed
    neighbours (the imports, the constants below them) go back together.

    Every line of ``after`` stays, so the rest of the edit still applies."""
    old, new = _lines(before), _lines(after)
    copied = {i: j for j, i in _copied(old, new).items()}  # original line -> result line
    inserts: dict[int, list[str]] = defaultdict(list)  # result line -> lines to put before it
    blocks: list[list[int]] = []  # [result line, first original line, end], neighbours in the original joined
    for removal in sorted(removals, key=lambda r: r.definition.span):
        first, last = removal.definition.lines[0] - 1, removal.definition.lines[1]
        gap = _blank_run_before(old, first)
        anchor = max((copied[i] for i in range(gap) if i in copied and old[i].strip()), default=-1)
        at = _block_end(new, anchor + 1, _indent(old[first]))
        if blocks and blocks[-1][0] == at and _blank_run_after(old, blocks[-1][2]) >= gap:
            blocks[-1][2] = max(blocks[-1][2], last)  # imports one after the other go back as one block
        else:
            blocks.append([at, gap, last])
    for at, gap, last in blocks:
        block = old[gap:last]
        if at < len(new) and new[at].strip():  # keep it apart from the line that follows
            block += old[last:_blank_run_after(old, last)]
        inserts[at] += block
    newline = "\r\n" if "\r\n" in before else "\n"
    out: list[str] = []
    for j, line in enumerate([*new, ""]):
        if inserts[j]:
            if out and not out[-1].endswith("\n"):
                out[-1] += newline
            if j < len(new) and not inserts[j][-1].endswith("\n"):
                inserts[j][-1] += newline
            out += inserts[j]
        out.append(line)
    return "".join(out)


# ------------------------------------------------------------------ listing definitions


@dataclass(frozen=True)
class Grammar:
    """How to find definitions in one tree-sitter grammar."""

    module: str  # the PyPI package's module
    function: str  # its function returning the language
    kinds: dict[str, str]  # definition node type -> kind
    wrappers: frozenset[str] = frozenset()  # nodes around one definition that belong to its text (decorators, export)
    transparent: frozenset[str] = frozenset()  # nodes whose children are at the same level (#ifdef blocks)


_JS = {"function_declaration": "function", "generator_function_declaration": "function",
       "class_declaration": "class", "method_definition": "method", "variable_declarator": "function"}
_JS_WRAPPERS = frozenset({"export_statement", "lexical_declaration", "variable_declaration"})
_TS = {**_JS, "abstract_class_declaration": "class", "interface_declaration": "interface",
       "type_alias_declaration": "type", "enum_declaration": "enum", "internal_module": "namespace",
       "module": "module", "function_signature": "function", "abstract_method_signature": "method"}
_TS_WRAPPERS = _JS_WRAPPERS | {"ambient_declaration", "expression_statement"}
_C = {"function_definition": "function", "struct_specifier": "struct", "union_specifier": "union",
      "enum_specifier": "enum", "type_definition": "type"}
_PREPROCESSOR = frozenset({"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif"})

GRAMMARS = {
    "python": Grammar("tree_sitter_python", "language",
                      {"function_definition": "function", "class_definition": "class"},
                      frozenset({"decorated_definition"})),
    "javascript": Grammar("tree_sitter_javascript", "language", _JS, _JS_WRAPPERS),
    "typescript": Grammar("tree_sitter_typescript", "language_typescript", _TS, _TS_WRAPPERS),
    "tsx": Grammar("tree_sitter_typescript", "language_tsx", _TS, _TS_WRAPPERS),
    "go": Grammar("tree_sitter_go", "language",
                  {"function_declaration": "function", "method_declaration": "method", "type_spec": "type"},
                  frozenset({"type_declaration"})),
    "rust": Grammar("tree_sitter_rust", "language",
                    {"function_item": "function", "function_signature_item": "function", "struct_item": "struct",
                     "enum_item": "enum", "union_item": "union", "trait_item": "trait", "impl_item": "impl",
                     "mod_item": "module", "macro_definition": "macro", "type_item": "type"}),
    "c": Grammar("tree_sitter_c", "language", _C, transparent=_PREPROCESSOR),
    "cpp": Grammar("tree_sitter_cpp", "language",
                   {**_C, "class_specifier": "class", "namespace_definition": "namespace"},
                   frozenset({"template_declaration"}),
                   _PREPROCESSOR | {"linkage_specification", "declaration_list"}),
    "java": Grammar("tree_sitter_java", "language",
                    {"class_declaration": "class", "interface_declaration": "interface", "enum_declaration": "enum",
                     "record_declaration": "record", "annotation_type_declaration": "annotation",
                     "method_declaration": "method", "constructor_declaration": "constructor"}),
}
_ALIASES = {"javascriptreact": "javascript", "jsx": "javascript", "typescriptreact": "tsx", "c++": "cpp"}
_SUFFIXES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".c": "c", ".h": "cpp", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp",
    ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp", ".java": "java",
}
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function", "class"})
_ATTACHED = frozenset({"comment", "line_comment", "block_comment", "attribute_item"})
"""Siblings right above a definition that are part of its text (doc comments, Rust attributes)."""
_NAME_NODES = frozenset({"identifier", "field_identifier", "type_identifier", "qualified_identifier",
                         "destructor_name", "operator_name"})


def language_of(*hints: str | None) -> str | None:
    """The first hint naming a language with a grammar: a language id
    ("python", "typescriptreact") or a file path (by its suffix); else None."""
    for hint in hints:
        if not hint:
            continue
        name = _ALIASES.get(hint.lower(), hint.lower())
        if name in GRAMMARS:
            return name
        if (by_suffix := _SUFFIXES.get(PurePath(hint).suffix.lower())) is not None:
            return by_suffix
    return None


def definitions(text: str, language: str | None) -> list[Definition]:
    """Top-level and class-level definitions in document order (a container
    before its members); a language without a grammar gets the heuristic."""
    return [d for d in _parse(text, language_of(language))[0] if d.kind not in STATEMENTS]


def top_level(text: str, language: str | None) -> tuple[list[Definition], bool]:
    """Every item of the file in document order, definitions (members
    included) and top-level statements, and whether the text parsed."""
    return _parse(text, language_of(language))


def parses(text: str, language: str | None) -> bool | None:
    """Whether ``text`` parses without a syntax error; None for a language without a grammar."""
    language = language_of(language)
    return None if language is None else _parse(text, language)[1]


def _parse(text: str, language: str | None) -> tuple[list[Definition], bool]:
    """The definitions and top-level statements, and whether the text parsed without a syntax error."""
    if language is None:
        return _heuristic_definitions(text), True
    grammar = GRAMMARS[language]
    tree = tree_sitter.Parser(_language(grammar.module, grammar.function)).parse(_utf8(text))
    walker = _Walker(grammar, _Text(text))
    walker.scope(tree.root_node, "", in_class=False)
    items = walker.found + _statements(tree.root_node, grammar, walker.text)
    return sorted(items, key=lambda d: (d.span[0], -d.span[1])), not tree.root_node.has_error


@lru_cache(maxsize=None)
def _language(module: str, function: str) -> tree_sitter.Language:
    return tree_sitter.Language(getattr(importlib.import_module(module), function)())


class _Walker:
    def __init__(self, grammar: Grammar, text: _Text):
        self.grammar, self.text = grammar, text
        self.found: list[Definition] = []

    def scope(self, scope, prefix: str, in_class: bool) -> None:
        """Definitions among ``scope``'s children; into classes, not into functions."""
        for child in scope.named_children:
            if child.type == "ERROR" or child.type in self.grammar.transparent:  # parse errors: recover what we can
                self.scope(child, prefix, in_class)
                continue
            inner = _unwrap(child, self.grammar)
            for node in inner:
                self.definition(node, child if len(inner) == 1 else node, prefix, in_class)

    def definition(self, node, outer, prefix: str, in_class: bool) -> None:
        """``node`` is the definition, ``outer`` the text it spans (decorators, export)."""
        kind = self.grammar.kinds[node.type]
        kind = "method" if kind == "function" and in_class else kind
        name, qualified, members = _name(node, self.text)
        if not name:
            return
        first, end = _attached_start(outer, self.text), outer.end_point
        self.found.append(Definition(
            name=name, kind=kind, qualified=prefix + _receiver(node, self.text) + qualified,
            lines=(first.row + 1, end.row + (1 if end.column else 0)),
            span=(self.text.offset(first), self.text.offset(end)),
        ))
        body = node.child_by_field_name("body")
        if kind not in CALLABLE and body is not None:
            self.scope(body, f"{prefix}{members}.", in_class=kind not in ("namespace", "module"))


_IMPORTS = frozenset({"import_statement", "import_from_statement", "future_import_statement", "import_declaration",
                      "use_declaration", "extern_crate_declaration", "preproc_include"})
_ASSIGNMENTS = {"assignment": "assignment", "augmented_assignment": "assignment", "lexical_declaration": "assignment",
                "variable_declaration": "assignment", "const_declaration": "assignment", "var_declaration": "assignment",
                "const_item": "assignment", "static_item": "assignment", "declaration": "declaration"}
_STATEMENT_WRAPPERS = frozenset({"expression_statement", "export_statement"})


def _statements(root, grammar: Grammar, text: _Text) -> list[Definition]:
    """The root's children that are no definition and no comment: imports,
    assignments, a Python module docstring, anything else by its first line.
    Children that did not parse are left out (a syntax error is no statement)."""
    found, first = [], True
    for node in root.named_children:
        if node.type == "ERROR" or node.type in _ATTACHED or node.type in grammar.transparent:
            continue
        if _unwrap(node, grammar):
            first = False
            continue
        start, end = _attached_start(node, text), node.end_point
        shown = text.of(node).strip().split("\n", 1)[0].rstrip()
        shown = shown if len(shown) <= SHOWN_CHARS else shown[: SHOWN_CHARS - 1] + "…"
        inner = node.named_children[0] if node.type in _STATEMENT_WRAPPERS and node.named_children else node
        kind, name, names = "statement", shown, frozenset()
        if node.type in _IMPORTS:
            kind, names = "import", frozenset(_leaves(node, text))
        elif inner.type in _ASSIGNMENTS:
            kind, name = _ASSIGNMENTS[inner.type], ", ".join(_bound(inner, text)) or shown
        elif first and inner.type == "string" and len(node.named_children) == 1 and grammar.module == "tree_sitter_python":
            kind, name, shown = "docstring", "docstring", "the module docstring"
        first = False
        found.append(Definition(name=name, kind=kind, qualified=name, lines=(start.row + 1, end.row + (1 if end.column else 0)),
                                span=(text.offset(start), text.offset(end)), shown=shown, names=names))
    return found


def _bound(node, text: _Text) -> list[str]:
    """The names a top-level assignment or declaration binds."""
    if node.type in ("assignment", "augmented_assignment"):
        return [text.of(node.child_by_field_name("left"))]
    if node.child_by_field_name("declarator") is not None:  # C: `static int *x = 0;`
        return [_name(node, text)[1]]
    if names := [text.of(n) for n in node.children_by_field_name("name")]:
        return names
    return [name for child in node.named_children for name in _bound(child, text)]


def _leaves(node, text: _Text) -> list[str]:
    """The identifiers (and module paths) of an import."""
    if not node.named_children:
        return [] if "comment" in node.type else [text.of(node)]
    return [leaf for child in node.named_children for leaf in _leaves(child, text)]


def _unwrap(node, grammar: Grammar) -> list:
    """The definitions ``node`` is or wraps (decorated, exported, `const f = () => ...`)."""
    if node.type in grammar.kinds:
        if node.type == "variable_declarator":
            value = node.child_by_field_name("value")
            return [node] if value is not None and value.type in _FUNCTION_VALUES else []
        return [node]
    if node.type in grammar.wrappers:
        return [d for child in node.named_children for d in _unwrap(child, grammar)]
    return []


def _name(node, text: _Text) -> tuple[str, str, str]:
    """The definition's short name, its qualified name within the scope
    (dotted where the code qualifies it: C++ `Inventory::total`), and the
    name its members are qualified with."""
    if node.type == "impl_item":  # Rust: `impl Trait for Type` holds Type's methods
        own, trait = text.of(node.child_by_field_name("type")), node.child_by_field_name("trait")
        return own, (f"{text.of(trait)} for {own}" if trait else own), own
    target = node.child_by_field_name("name")
    while target is None and node is not None:  # C declarators: `int *(*f)(void)`
        node = node.child_by_field_name("declarator") or (
            node.named_children[0] if node.type == "parenthesized_declarator" else None)
        target = node if node is not None and node.type in _NAME_NODES else None
    name = text.of(target).replace("::", ".")
    return name.rsplit(".", 1)[-1], name, name


def _receiver(node, text: _Text) -> str:
    """Go: a method's receiver type, as its qualifier."""
    receiver = node.child_by_field_name("receiver") if node.type == "method_declaration" else None
    stack = [receiver] if receiver is not None else []
    while stack:
        n = stack.pop(0)
        if n.type == "type_identifier":
            return f"{text.of(n)}."
        stack.extend(n.named_children)
    return ""


def _attached_start(node, text: _Text):
    """Where the definition's text starts: at the comments and attributes
    right above it, each on a line of its own."""
    start = node.start_point
    previous = node.prev_named_sibling
    while (previous is not None and previous.type in _ATTACHED and previous.end_point.row >= start.row - 1
           and text.starts_line(previous.start_point)):
        start = previous.start_point
        previous = previous.prev_named_sibling
    return start


def _inside(d: Definition, outer: Definition) -> bool:
    return outer.span[0] <= d.span[0] and d.span[1] <= outer.span[1]


def _names(instruction: str, d: Definition) -> bool:
    """Whether the instruction names the definition or one that encloses it
    (a whole word, case-sensitive: "rename Inventory" covers its methods); an
    import, by any name in it ("drop the os import")."""
    return any(_mentions(instruction, name) for name in {d.name, *d.qualified.split(".")[:-1], *d.names} if name)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", text) is not None


class _Text:
    """Tree-sitter's (row, byte column) points as offsets into the str."""

    def __init__(self, text: str):
        self.lines = _lines(text)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, point) -> int:
        if point.row >= len(self.lines):
            return self.starts[-1]
        before = _utf8(self.lines[point.row])[: point.column]
        return self.starts[point.row] + len(before.decode("utf-8", "surrogatepass"))

    def of(self, node) -> str:
        return node.text.decode("utf-8", "surrogatepass") if node is not None else ""

    def starts_line(self, point) -> bool:
        return not _utf8(self.lines[point.row])[: point.column].strip()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate from a client is text, not a crash


# ------------------------------------------------------------------ the heuristic, and lines


_HEADER = re.compile(
    r"(?P<indent>[ \t]*)(?:(?:export|default|public|private|protected|internal|static|async|abstract|final|"
    r"override|open|pub|local|inline)\s+)*(?P<keyword>def|class|fn|func|fun|function|sub|proc|module|struct|"
    r"enum|trait|interface|object)\s+(?P<name>[A-Za-z_$][\w$.:]*)"
)
_CLOSER = re.compile(r"\s*(\}|\]|\)|end\b)")


def _heuristic_definitions(text: str) -> list[Definition]:
    """Lines that open a definition by keyword (`def`, `fn`, `function`,
    `class`, ...), each running to the end of its indented block (its closing
    `}` or `end` included); definitions nested in functions are left out."""
    positions, found = _Text(text), []
    lines, starts = positions.lines, positions.starts
    for i, line in enumerate(lines):
        if not (m := _HEADER.match(line)):
            continue
        end = _block_end(lines, i + 1, _indent(line))
        outer = [d for d in found if d.lines[0] <= i < d.lines[1]]
        if outer and outer[-1].kind in CALLABLE:
            continue
        kind = "function" if m["keyword"] in ("def", "fn", "func", "fun", "function", "sub", "proc") else m["keyword"]
        name = m["name"].replace("::", ".").rstrip(".:")
        found.append(Definition(
            name=name.rsplit(".", 1)[-1], kind="method" if outer and kind == "function" else kind,
            qualified=f"{outer[-1].qualified}.{name}" if outer else name,
            lines=(i + 1, end), span=(starts[i] + len(m["indent"]), starts[end] - _newline_length(lines[end - 1])),
        ))
    return found


def _newline_length(line: str) -> int:
    return len(line) - len(line.rstrip("\r\n"))


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The line after the block that runs from ``start`` under a line indented
    ``indent``: deeper lines, and a closing line at the same indentation."""
    end = start
    for j in range(start, len(lines)):
        line = lines[j]
        if not line.strip():
            continue
        if _indent(line) > indent:
            end = j + 1
        elif _indent(line) == indent and _CLOSER.match(line):
            return j + 1
        else:
            break
    return end


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _lines(text: str) -> list[str]:
    """Lines with their endings, split at "\n" only (as tree-sitter counts rows)."""
    return re.findall(r"[^\n]*\n|[^\n]+", text)


def _copied(old: list[str], new: list[str]) -> dict[int, int]:
    """Result line -> original line, for the lines the result copied."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return {j + k: i + k for i, j, n in matcher.get_matching_blocks() for k in range(n)}


def _cut_line(old: list[str], new: list[str]) -> int | None:
    """The original line (1-based) where the result stops, if its last
    non-blank line was copied from the original."""
    last = next((j for j in range(len(new) - 1, -1, -1) if new[j].strip()), None)
    if last is None:
        return 0
    i = _copied(old, new).get(last)
    return None if i is None else i + 1


def _blank_run_before(lines: list[str], i: int) -> int:
    while i > 0 and not lines[i - 1].strip():
        i -= 1
    return i


def _blank_run_after(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i
