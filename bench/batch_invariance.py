"""Does a llama.cpp pass over k tokens score exactly as k one-token steps? And at what cost?

On the packaged target, after a 600-token context from the longest requests file, the next
100 tokens are scored one at a time and in passes of k tokens; the script prints the largest
logit difference, the largest change of the gap between the top two tokens, how many greedy
choices flip, and the milliseconds per token, for the engine's setting (`exact`: no repacked
weights, no flash attention; the engine also turns ggml's tiled matmul off) or llama.cpp's
defaults (`default`: repacked weights, flash attention and tiled matmul on). Whether the
build has llamafile's sgemm is printed: run `default` on a stock build for the "before".

    python bench/batch_invariance.py exact --threads 2 >> bench/results/batch-invariance.jsonl
    python bench/batch_invariance.py default --threads 2 >> bench/results/batch-invariance.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import llama_cpp
import numpy as np

from engine import models
from engine.catalogue import DEFAULT_TARGET, PACKAGED
from engine.runtimes import llama_runtime

ROOT = Path(__file__).resolve().parents[1]
PASSES = (1, 2, 4, 8, 16, 40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setting", choices=["exact", "default"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.setting == "default":
        os.environ["GGML_CPU_TILED_MM"] = "1"  # after llama_runtime's import turned it off; read at the first matmul
    pkg = PACKAGED[DEFAULT_TARGET]
    path = models.packaged_gguf(pkg)
    tokenizer = models._gguf_tokenizer(path, pkg.sha256)
    rows = [json.loads(line) for line in (ROOT / "bench" / "data" / "edits-requests.jsonl").open()]
    ids = tokenizer(max(rows, key=lambda r: r["chars"])["before"])["input_ids"]
    context, rest = ids[:600], ids[600:700]

    weights = llama_runtime.LlamaWeights(str(path), args.threads) if args.setting == "exact" \
        else _default_weights(str(path), args.threads)
    runtime = llama_runtime.LlamaRuntime(weights)
    if args.setting == "default":  # llama.cpp's own context default: flash attention chosen automatically
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = weights.context_tokens, 512, 512
        params.n_threads = params.n_threads_batch = args.threads
        runtime.ctx = llama_cpp._internals.LlamaContext(model=weights.model, params=params, verbose=False)
    runtime.forward(context, keep=1)
    result = {"setting": args.setting, "threads": args.threads, "llamafile": not llama_runtime.batch_invariant(),
              "tiled_matmul": args.setting == "default", "passes": {}}
    single = None
    for k in PASSES:
        runtime.truncate(len(context))
        start = time.perf_counter()
        scores = np.concatenate([runtime.logits(rest[i:i + k], keep=len(rest[i:i + k])) for i in range(0, len(rest), k)])
        ms = (time.perf_counter() - start) / len(rest) * 1000
        if single is None:
            single = scores
        top = np.argsort(-single, axis=1)[:, :2]
        at = np.arange(len(rest))
        gap_change = (scores[at, top[:, 0]] - scores[at, top[:, 1]]) - (single[at, top[:, 0]] - single[at, top[:, 1]])
        result["passes"][k] = {"ms_per_token": round(ms, 1),
                               "max_logit_difference": round(float(np.abs(scores - single).max()), 4),
                               "max_top2_gap_change": round(float(np.abs(gap_change).max()), 4),
                               "flipped_choices": int((scores.argmax(1) != single.argmax(1)).sum())}
    print(json.dumps(result))


def _default_weights(path: str, threads: int) -> llama_runtime.LlamaWeights:
    """The GGUF loaded with llama.cpp's default model parameters (repacked weights)."""
    weights = llama_runtime.LlamaWeights(path, threads)
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    weights.model = llama_cpp._internals.LlamaModel(path_model=path, params=params, verbose=False)
    return weights


if __name__ == "__main__":
    main()
