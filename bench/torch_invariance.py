"""Does a bf16 torch pass over k tokens score exactly as k one-token steps on this CPU? At what cost?

On the packaged target, after a 1,000-token context from the longest requests file, the next
257 tokens are scored one at a time and in passes of k tokens (each pass behind the same
context); the script prints, per k, how many rows differ from the one-token steps' at all,
the largest logit difference, how many greedy choices flip, and the milliseconds per token
(the best of three). Run it on the code before a change and after (PYTHONPATH=CHECKOUT).

    python bench/torch_invariance.py >> bench/results/torch-invariance.jsonl
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

import engine
from engine import calibration
from engine.calibration import Setting
from engine.catalogue import DEFAULT_TARGET
from engine.runtimes.base import open_runtime

ROOT = Path(__file__).resolve().parents[1]
CONTEXT, PASSES, THREADS = 1000, (1, 2, 16, 40, 64, 128, 257), 2


def main() -> None:
    torch.set_num_threads(THREADS)
    loaded = calibration.load_on(DEFAULT_TARGET, Setting("torch", "bf16"), None, THREADS)
    runtime = open_runtime(loaded)
    items = [json.loads(line) for line in (ROOT / "bench/data/edits-requests.jsonl").open()]
    text = max((item["before"] for item in items), key=len)
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"][:CONTEXT + max(PASSES)]
    runtime.forward(ids[:CONTEXT], keep=1)
    steps = []
    for i in range(max(PASSES)):
        steps.append(runtime.logits(ids[CONTEXT + i:CONTEXT + i + 1], 1)[0])
    steps = np.stack(steps)
    for k in PASSES:
        best = float("inf")
        for _ in range(3):
            runtime.truncate(CONTEXT)
            start = time.perf_counter()
            rows = runtime.logits(ids[CONTEXT:CONTEXT + k], k)
            best = min(best, time.perf_counter() - start)
        diff = np.abs(rows - steps[:k]).max(axis=1)
        print(json.dumps({
            "k": k, "rows_differing": int((diff > 0).sum()), "max_logit_diff": float(diff.max()),
            "flips": int((rows.argmax(axis=1) != steps[:k].argmax(axis=1)).sum()),
            "ms_per_token": round(best / k * 1e3, 2), "cpu": calibration.cpu_description(),
            "threads": THREADS, "torch": torch.__version__,
            "checkout": str(Path(engine.__file__).resolve().parents[1])}), flush=True)


if __name__ == "__main__":
    main()
