"""A reply that covers only part of the file, merged into the file it edits.

A small model asked for a whole file often answers with only what it changed: the
one function it fixed, without the imports, the constants and the other functions.
Applied as the file, that reply deletes them all. Such a reply is an edit sketch:
when each of its top-level items (a function, a class, a method given alone or in
its class or impl) matches one item of the original by kind and name, the original
keeps everything else and takes those items from the reply. Where matching is
ambiguous (an item matches none or several, the reply does not parse, the language
has no grammar) the engine asks the model for the whole file with the sketch
applied instead (prompts.build's ``sketch``: an apply pass, almost all copy).

One policy for the local engine and the remote one, so no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.client.guard import ASKS_TO_DELETE, CALLABLE, Definition, language_of, parses, removed_definitions, top_level
from engine.client.protocol import Partial

NAMED = 3
"""Items a message names before it says how many more."""


@dataclass(frozen=True)
class Sketch:
    """A partial reply: the merged file, or None when only an apply pass can write it."""

    text: str | None
    items: list[str]  # what the reply rewrote ("do_complete()", "Inventory.restock()")


class Ambiguous(Exception):
    """The reply's items cannot be placed in the original by kind and name alone."""


def partial_edit(text: str, instruction: str, region: object | None, finish_reason: str, result: str,
                 language: str | None) -> Sketch | None:
    """Whether a finished whole-file reply is partial, and if so the merge.

    Partial: the guard finds top-level items of ``text`` missing that the instruction
    does not name, and the instruction does not ask for deletion (the guard then
    tells the user instead). A region edit keeps its own contract."""
    if region is not None or finish_reason != "stop" or result == text or not result.strip():
        return None
    if ASKS_TO_DELETE.search(instruction):
        return None
    removals = removed_definitions(text, result, instruction, language)
    if not removals:
        return None
    try:
        return merge(text, result, language)
    except Ambiguous:
        return Sketch(None, [])


def merge(before: str, reply: str, language: str | None) -> Sketch:
    """``before`` with its items replaced by the reply's versions; raises Ambiguous."""
    language = language_of(language)
    if language is None:
        raise Ambiguous("no grammar for the language")
    old, old_ok = top_level(before, language)
    new, new_ok = top_level(reply, language)
    if not new_ok or not new:
        raise Ambiguous("the reply does not parse")
    imported = frozenset().union(*(d.names for d in old if d.kind == "import"))
    edits: list[tuple[int, int, str]] = []  # (start, end, text) in before
    items: list[str] = []
    for item in _outermost(new):
        if item.kind == "import":
            if not item.names <= imported:
                edits.append(_new_import(before, old, reply[slice(*item.span)]))
                items.append(str(item))
            continue
        _place(before, old, reply, new, item, _outermost(old), edits, items)
    starts = sorted(edits)
    if any(a[1] > b[0] for a, b in zip(starts, starts[1:])):
        raise Ambiguous("two items of the reply replace the same text")
    merged = before
    for start, end, text in reversed(starts):
        merged = merged[:start] + text + merged[end:]
    if parses(before, language) and not parses(merged, language):
        raise Ambiguous("the merged file does not parse")
    return Sketch(merged, items)


def describe(partial: Partial) -> str:
    """What the CLI and the editor say about a partial reply."""
    shown = ", ".join(partial.items[:NAMED]) + (f" and {len(partial.items) - NAMED} more"
                                               if len(partial.items) > NAMED else "")
    if partial.how == "merged":
        return f"the model replied with part of the file: applied as a partial edit of {shown}"
    return ("the model replied with part of the file; it was then asked to write the whole file with that part "
            "applied (an apply pass)")


def _place(before: str, old: list[Definition], reply: str, new: list[Definition], item: Definition,
           scope: list[Definition], edits: list, items: list[str]) -> None:
    """Replace the one item of ``scope`` (or, for a callable given alone, the one
    method anywhere) that ``item`` stands for; a container that lacks members of
    its original has its members placed one by one."""
    matches = [d for d in scope if (d.kind, d.qualified) == (item.kind, item.qualified)]
    if not matches and item.kind in CALLABLE:  # a method given without its class
        matches = [d for d in old if d.kind in CALLABLE and d.name == item.name]
    if len(matches) != 1:
        raise Ambiguous(f"{item} matches {len(matches)} items of the file")
    [original] = matches
    members, own = _members(old, original), _members(new, item)
    if own and {(m.kind, m.qualified) for m in members} - {(m.kind, m.qualified) for m in own}:
        for member in own:
            _place(before, old, reply, new, member, members, edits, items)
        return
    edits.append((*original.span, _reindent(reply, item.span, before, original.span[0])))
    items.append(str(original))


def _outermost(found: list[Definition]) -> list[Definition]:
    return [d for d in found if not any(o is not d and _inside(d, o) for o in found)]


def _members(found: list[Definition], container: Definition) -> list[Definition]:
    """The items directly inside ``container``."""
    return _outermost([d for d in found if d is not container and _inside(d, container)])


def _inside(d: Definition, outer: Definition) -> bool:
    return outer.span[0] <= d.span[0] and d.span[1] <= outer.span[1]


def _column(text: str, offset: int) -> str:
    """The text between the start of the line and ``offset`` (its indentation)."""
    return text[text.rfind("\n", 0, offset) + 1:offset]


def _reindent(reply: str, span: tuple[int, int], before: str, at: int) -> str:
    """The reply's item as text for ``before`` at ``at``: its lines after the first
    moved from the reply's indentation to the original's."""
    source, target = _column(reply, span[0]), _column(before, at)
    first, *rest = reply[span[0]:span[1]].split("\n")
    if source == target:
        return reply[span[0]:span[1]]
    if source.strip() or target.strip():
        raise Ambiguous("the item does not start its line")
    moved = [target + line[len(source):] if line.startswith(source) else line if not line.strip() else None
             for line in rest]
    if None in moved:
        raise Ambiguous("the item's lines are indented less than its first")
    return "\n".join([first, *moved])


def _new_import(before: str, old: list[Definition], statement: str) -> tuple[int, int, str]:
    """An import the reply adds, on its own line after the original's last import; in a
    file without imports, at its top: after a module docstring, a shebang and leading
    comment lines (a file where that does not parse, a Go file's package clause first,
    fails the merged file's parse check and goes to an apply pass)."""
    newline = "\r\n" if "\r\n" in before else "\n"
    imports = [d for d in old if d.kind == "import"]
    if imports:
        end = imports[-1].span[1]
        return end, end, newline + statement
    docstrings = [d for d in old if d.kind == "docstring"]
    if docstrings:
        end = docstrings[0].span[1]
        return end, end, newline * 2 + statement
    start = 0
    while before.startswith("#", start):  # a shebang, an encoding line, a licence header
        start = before.find("\n", start) + 1 or len(before)
    return start, start, statement + newline * 2
