"""Prompt lookup: propose the continuation of an earlier occurrence of the text's suffix.

Whole-file edits copy most of their output from the input file, so the tokens that
follow the current suffix's n-gram in the prompt are very likely what comes next.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Sequence

from engine.decoding.cached_model import common_prefix_length


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt's tokens and what prompt lookup may copy from them, travelling together
    from the engine's encoding to the strategies' lookups."""

    ids: Sequence[int] = ()
    copy_end: int | None = None
    """Lookups copy nothing from here on: the file's closing fence ends here, and so does the reply."""
    copy_start: int = 0
    """Lookups copy nothing before this (a region edit's source is the region's own fence)."""
    prediction: Sequence[int] = ()
    """Tokens the reply is expected to copy, a lookup source besides the prompt (OpenAI's Predicted Outputs)."""


class NgramIndex:
    """Positions of every n-gram (1 <= n <= max_ngram) in a growing token list.

    ``prediction`` (OpenAI's Predicted Outputs: text the reply is expected to copy) is
    indexed ahead of the prompt, as a source of its own: a copy out of it stops at its
    end. Positions count from its start, so ``tokens`` is the prediction, then ``seq``;
    ``copy_end`` and ``copy_start`` count in the prompt."""

    def __init__(self, max_ngram: int, copy_end: int | None = None, copy_start: int = 0,
                 prediction: Sequence[int] = ()):
        self.max_ngram = max_ngram
        self.tokens: list[int] = []
        self._ends: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(max_ngram + 1)]
        self._append(prediction)
        self.offset = len(prediction)  # where the prompt's tokens start
        # Copies out of the source stop at these (where the prediction ends; where the reply ends: the file's closing fence)
        self.copy_ends = [end for end in (self.offset, copy_end and self.offset + copy_end) if end]
        # and begin no earlier than this (a region edit copies from the region's fence only)
        self.copy_start = copy_start and self.offset + copy_start
        self.source_end = 0  # the first text indexed (the prediction and the prompt, with the file) ends here
        self.pointer = 0  # where the last match used in the source ended (0: none yet)
        self._pointer_at = 0  # the length of the text when that match was used

    def extend(self, seq: Sequence[int]) -> None:
        """Index the tokens of ``seq`` beyond those already indexed (seq only grows)."""
        self.source_end = self.source_end or self.offset + len(seq)
        self._append(seq[len(self.tokens) - self.offset:])

    def _append(self, new: Sequence[int]) -> None:
        tokens = self.tokens
        for token in new:
            tokens.append(token)
            end = len(tokens)
            for n in range(1, min(self.max_ngram, end) + 1):
                self._ends[n].setdefault(tuple(tokens[end - n:end]), []).append(end)

    def propose(self, suffix_source: Sequence[int], limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the longest indexed match of the suffix
        of ``suffix_source``. In the source, the first match at or after where the last
        copy stopped wins (the copy runs on, or resumes after an edit: files repeat
        lines, such as a docstring's, so an earlier match is often a repeat), else the
        first; a match in the generated text (a repeat of something new) only when the
        source has none."""
        if limit <= 0:
            return []
        stop = self._copy_stop(suffix_source) if self.pointer else 0
        for n in range(min(self.max_ngram, len(suffix_source)), 0, -1):
            ends = self._ends[n].get(tuple(suffix_source[-n:]))
            if not ends:
                continue
            in_source = bisect_left(ends, self.source_end)  # ends[:in_source] lie in the source
            first = bisect_left(ends, self.copy_start, hi=in_source)  # ends[first:in_source] may be copied from
            if first < in_source:
                i = bisect_left(ends, stop, lo=first, hi=in_source)
                end = ends[i] if i < in_source else ends[first]
                self.pointer, self._pointer_at = end, len(suffix_source)
                boundary = next((c for c in self.copy_ends if end < c), None)
                if boundary:
                    limit = min(limit, boundary - end)
            else:
                generated = ends[in_source:]
                end = (generated[-1] if generated and generated[-1] < len(self.tokens)
                       else generated[-2] if len(generated) > 1 else None)
                if end is None:
                    continue
            return self.tokens[end:end + limit]
        return []

    def _copy_stop(self, suffix_source: Sequence[int]) -> int:
        """Where the next match in the source should end, at the earliest: where the
        last copy has got to, if the text written since followed the source all the
        way; past where it stopped, if not (the text then ends in new tokens)."""
        since = suffix_source[self._pointer_at:]
        followed = common_prefix_length(self.tokens[self.pointer:self.pointer + len(since)], since)
        return self.pointer + followed + (followed < len(since))
