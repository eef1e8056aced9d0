"""The llama.cpp runtime: a quantised GGUF run by llama-cpp-python's low-level API.

On a CPU, llama.cpp's Q4 kernels decode one token several times faster than bf16
PyTorch, while prefill and long verifications take about twice as long here
(docs/performance.md). The model weights are mapped once; every runtime on them owns
one llama.cpp context (one KV cache, sequence 0).

Batch invariance. The target's choice after a token must not depend on how many tokens
its pass carried: otherwise a method's output departs from plain greedy decoding at
near-ties, and so does a run's from the last (proposal lengths follow timings). ggml's CPU
backend sends a batch down other kernels than a one-token step: repacked Q4_K weights
(gemm for 4+ rows, gemv below), tiled K-quant matmuls (8+ rows), flash attention (split
over the cache for one query, tiled for 64+) and llamafile's sgemm for attention's float16
products (2+ rows). With all four off, every product is one vec_dot per output element, in
the same order whatever the batch: logits are bit-identical between a one-token step and
any pass (measured; docs/performance.md). The first three are settings; llamafile is a
build option (GGML_LLAMAFILE=OFF, which the README's install sets), checked at load.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals

log = logging.getLogger(__name__)
logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load chatter goes to stderr
os.environ["GGML_CPU_TILED_MM"] = "0"  # ggml reads it once, at the first matmul of the process

REBUILD = ('CMAKE_ARGS="-DGGML_LLAMAFILE=OFF" pip install --no-cache-dir --force-reinstall --no-deps '
           f"llama-cpp-python=={llama_cpp.__version__}")


def batch_invariant() -> bool:
    """Whether this llama.cpp build can verify tokens exactly as one-token steps choose them."""
    return "LLAMAFILE = 1" not in llama_cpp.llama_print_system_info().decode()

BATCH_TOKENS = 512  # llama_decode's largest batch; longer inputs go in chunks
MAX_CONTEXT = 32768


class LlamaWeights:
    """A GGUF mapped into memory, shared by the contexts made on it."""

    def __init__(self, path: str, threads: int | None = None, float32_cache: bool = False,
                 fast_kernels: bool = False):
        """``fast_kernels``: llama.cpp's own choice (repacked weights, flash attention), faster
        than the batch-invariant ones above but not bit for bit one-token steps'."""
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_extra_bufts = fast_kernels  # repacked weights (batch invariance, above)
        self.fast_kernels = fast_kernels
        self.path = path
        self.model = _internals.LlamaModel(path_model=path, params=params, verbose=False)
        self.threads = threads or len(os.sched_getaffinity(0))  # every core we may use
        self.context_tokens = min(self.model.n_ctx_train(), MAX_CONTEXT)
        self.eos = {t for t in (self.model.token_eos(), self.model.token_eot()) if t >= 0}
        self.description = self.model.desc()  # e.g. "qwen2 1.5B Q4_K - Medium"
        # llama.cpp caches K and V in float16; float32 keeps tiny test models' greedy choices
        # identical between batch sizes (the lossless tests), at twice the cache memory.
        self.float32_cache = float32_cache


@dataclass
class LlamaSnapshot:
    state: bytes  # llama.cpp's serialised sequence, possibly longer than ``length``
    length: int

    @property
    def nbytes(self) -> int:
        return len(self.state)


class LlamaRuntime:
    name = "llama.cpp"

    def __init__(self, weights: LlamaWeights):
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = weights.context_tokens
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_threads = params.n_threads_batch = weights.threads
        params.no_perf = True
        if not weights.fast_kernels:
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # batch invariance, above
        if weights.float32_cache:
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        self.weights = weights
        self.ctx = _internals.LlamaContext(model=weights.model, params=params, verbose=False)
        self.context_tokens = weights.context_tokens
        self.n_vocab = weights.model.n_vocab()
        self.batch = _internals.LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=1, verbose=False)
        self._cached = 0

    @property
    def cached(self) -> int:
        return self._cached

    def forward(self, tokens: Sequence[int], keep: int) -> list[int]:
        return [choice for rows in self._decode(tokens, keep) for choice in rows.argmax(axis=1).tolist()]

    def logits(self, tokens: Sequence[int], keep: int) -> np.ndarray:
        return np.concatenate([rows.copy() for rows in self._decode(tokens, keep)])

    def _decode(self, tokens: Sequence[int], keep: int):
        """Feed ``tokens`` in batches; yield the logits of the last ``keep`` positions, a
        [rows, n_vocab] view per batch that has any (valid until the next decode)."""
        assert 1 <= keep <= len(tokens), (keep, len(tokens))
        first_kept = len(tokens) - keep
        for start in range(0, len(tokens), BATCH_TOKENS):
            chunk = tokens[start : start + BATCH_TOKENS]
            batch = self.batch.batch
            batch.n_tokens = len(chunk)
            outputs = 0
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = self._cached + i
                batch.seq_id[i][0] = 0
                batch.n_seq_id[i] = 1
                batch.logits[i] = wanted = start + i >= first_kept
                outputs += wanted
            self.ctx.decode(self.batch)
            self._cached += len(chunk)
            if outputs:
                # logits of the flagged positions, contiguous: [outputs, n_vocab]
                yield np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.ctx.ctx), shape=(outputs, self.n_vocab))

    def truncate(self, length: int) -> None:
        assert 0 <= length <= self._cached, (length, self._cached)
        if length < self._cached:
            self.ctx.kv_cache_seq_rm(0, length, -1)
        self._cached = length

    def snapshot(self, length: int) -> LlamaSnapshot:
        # llama.cpp copies a whole sequence; restore() drops what lies past ``length``.
        assert 0 < length <= self._cached, (length, self._cached)
        size = llama_cpp.llama_state_seq_get_size(self.ctx.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx.ctx, buffer, size, 0)
        return LlamaSnapshot(bytes(buffer[:written]), length)

    def restore(self, snapshot: LlamaSnapshot) -> None:
        self.ctx.kv_cache_seq_rm(0, 0, -1)
        buffer = (ctypes.c_uint8 * len(snapshot.state)).from_buffer_copy(snapshot.state)
        if not llama_cpp.llama_state_seq_set_data(self.ctx.ctx, buffer, len(snapshot.state), 0):
            raise RuntimeError("llama.cpp could not restore a saved KV cache")
        self.ctx.kv_cache_seq_rm(0, snapshot.length, -1)
        self._cached = snapshot.length
