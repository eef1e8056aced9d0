"""The model-runtime interface the decoding loop is written against.

A runtime is one model with one KV cache. The loop only ever feeds tokens,
reads the model's greedy choice at the last few positions, and crops the cache
back; a second runtime (llama.cpp, say) implements the same few methods and every
decoding strategy runs on it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np

    from engine.models import LoadedModel


class Snapshot(Protocol):
    """A copy of the first ``length`` cached positions, kept for prefix reuse."""

    length: int
    nbytes: int


class Runtime(Protocol):
    name: str  # "torch", "llama.cpp"
    context_tokens: int

    @property
    def cached(self) -> int:
        """Positions currently in the KV cache."""

    def forward(self, tokens: Sequence[int], keep: int) -> list[int]:
        """Append ``tokens`` to the cache; return the greedy next token after each
        of the last ``keep`` of them (1 <= keep <= len(tokens))."""

    def logits(self, tokens: Sequence[int], keep: int) -> "np.ndarray":
        """As ``forward``, but return the scores themselves, float32 [keep, vocab]: for
        measuring how close a divergence between methods was (identity checks)."""

    def truncate(self, length: int) -> None:
        """Drop cached positions from ``length`` on."""

    def snapshot(self, length: int) -> Snapshot:
        """Copy the first ``length`` cached positions (for the prefix cache)."""

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the cache by a copy of ``snapshot``."""


def open_runtime(loaded: "LoadedModel") -> Runtime:
    """A fresh KV cache on ``loaded``'s weights (each implementation imported only when used)."""
    if loaded.runtime == "llama.cpp":
        from engine.runtimes.llama_runtime import LlamaRuntime

        return LlamaRuntime(loaded.model)
    from engine.runtimes.torch_runtime import TorchRuntime

    return TorchRuntime(loaded)
