"""Forward-pass time of the target on the CPU with SDPA against cpu_attention's matmul path.

For each cached context and pass length, times one pass with each attention
implementation, alternating them, and keeps the best of ``--repeats``; one JSON line per
(context, length) on stdout.

    python bench/attention.py [--threads N] [--repeats R] > bench/results/attention.jsonl
"""

import argparse
import json
import time

import torch

from engine import models
from engine.catalogue import DEFAULT_TARGET
from engine.runtimes import cpu_attention
from engine.runtimes.torch_runtime import TorchRuntime

CONTEXTS = (64, 1500, 3000)
LENGTHS = (1, 16, 64, 128, 256)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_TARGET)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = models.load(args.model, runtime="torch", device="cpu")
    runtime = TorchRuntime(loaded)
    ids = [(i * 7919) % 5000 + 32 for i in range(max(CONTEXTS) + max(LENGTHS))]
    implementations = ("sdpa", cpu_attention.NAME)
    for context in CONTEXTS:
        runtime.truncate(0)
        runtime.forward(ids[:context], keep=1)
        for k in LENGTHS:
            best = dict.fromkeys(implementations, float("inf"))
            for _ in range(args.repeats):
                for name in implementations:
                    loaded.model.set_attn_implementation(name)
                    runtime.truncate(context)
                    start = time.perf_counter()
                    runtime.forward(ids[context:context + k], keep=k)
                    best[name] = min(best[name], time.perf_counter() - start)
            row = {"model": args.model, "threads": args.threads, "context": context, "tokens": k,
                   **{f"{name}_ms": round(seconds * 1e3, 1) for name, seconds in best.items()},
                   "speedup": round(best["sdpa"] / best[cpu_attention.NAME], 3)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
