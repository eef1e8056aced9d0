"""What to make of an AI edit's result, apart from the LSP I/O that carries it out
(blazedit_lsp/editing.py): which results need the user's confirmation, what to tell
and ask them, and the text to apply over what they typed meanwhile. Pure functions,
as jedi-language-server keeps its text-edit utilities apart from its handlers.
"""

from __future__ import annotations

from engine.client.guard import ASKS_TO_DELETE, Removal

from .edits import rebase, split_lines

MASS_DELETION = 0.5
"""Results shorter than this share of the input need a confirmation, unless
the instruction asks for deletion (guard.ASKS_TO_DELETE)."""
APPLY, DISCARD, CANCEL = "Apply", "Discard", "Cancel"
ASKING_AGAIN = "the model returned the file unchanged: asking again, with the model saying first what it changes"
APPLY_PASS = "the model replied with part of the file: asking for the whole file with that part applied"


def describe_engine_error(code: str, message: str) -> str:
    """A message for the user, saying what to do where we know."""
    if code == "context_overflow":
        return f"the document is too large for the model's context ({message}); edit a smaller file"
    if code == "too_large":
        return f"the document is too large for the engine ({message})"
    if code == "model_error":
        return f"the model failed: {message}"
    return f"engine error ({code}): {message}"


def needs_confirmation(sent: str, result: str, finish_reason: str, instruction: str) -> str | None:
    """Why the result needs an explicit confirmation, or None."""
    if finish_reason == "length":
        return "the engine stopped at its length limit, so the file may be cut off"
    if not result.strip() and sent.strip():
        return "the engine returned an empty file"
    had, kept = len(sent.strip()), len(result.strip())
    lines = sum(1 for line in split_lines(sent) if line.strip())
    if lines >= 3 and kept < MASS_DELETION * had and not ASKS_TO_DELETE.search(instruction):
        return f"the edit deletes most of the file ({had - kept} of {had} characters)"
    return None


def new_attempt_message(sent: str, streamed: str) -> str:
    """What a new attempt of the engine means: the last one streamed the file unchanged
    so far (asked again), or part of it (an apply pass)."""
    return ASKING_AGAIN if sent.startswith(streamed) else APPLY_PASS


def keep_title(removals: list[Removal]) -> str:
    """The answer that applies the edit with the removed definitions kept."""
    return f"Apply and keep {removals[0].definition}" if len(removals) == 1 else f"Apply and keep all {len(removals)}"


def rebased(ours: str, result: str, current: str) -> str:
    """``result`` moved onto ``current`` from ``ours`` (what the AI last applied); raises
    RebaseConflict where the user changed the lines it edits."""
    return result if current == ours else rebase(ours, result, current)
