"""What feeding a prompt in chunks costs, and what it changes: the evidence for the prefill grid.

On the packaged target (one setting: `torch bf16` by default), a prompt of ``--tokens``
tokens from the longest requests file is prefilled in one pass and in chunks of 128, 256 and
512 tokens aligned to position 0, schedules alternating over ``--repeats`` rounds; printed:
the seconds of each (best and median), and how far the scores after the prompt move between
schedules (the largest difference from the one-pass scores; 0.0 where a schedule scores bit for
bit as one pass). One JSON line:

    python bench/prefill_grid.py --threads 2 >> bench/results/prefill-grid.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from engine import calibration
from engine.calibration import Setting
from engine.catalogue import DEFAULT_TARGET
from engine.runtimes.base import open_runtime

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = (None, 128, 256, 512)  # None: the whole prompt in one pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="torch bf16", help="runtime and dtype or kernels, as calibrate names them")
    parser.add_argument("--tokens", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtime_name, _, dtype = args.setting.partition(" ")
    loaded = calibration.load_on(DEFAULT_TARGET, Setting(runtime_name, dtype), None, args.threads)
    runtime = open_runtime(loaded)
    rows = [json.loads(line) for line in (ROOT / "bench" / "data" / "edits-requests.jsonl").open()]
    text = max(rows, key=lambda row: len(row["before"]))["before"]
    ids = loaded.tokenizer(text * 4, add_special_tokens=False)["input_ids"][:args.tokens + 1]

    def prefill(chunk: int | None) -> tuple[float, np.ndarray]:
        runtime.truncate(0)
        start, end = time.perf_counter(), args.tokens
        step = chunk or end
        for at in range(0, end, step):
            runtime.forward(ids[at:min(at + step, end)], keep=1)
        seconds = time.perf_counter() - start
        scores = runtime.logits(ids[end:end + 1], keep=1)[0]
        return seconds, scores

    prefill(None)  # warm-up
    seconds: dict[int | None, list[float]] = {chunk: [] for chunk in CHUNKS}
    scores = {}
    for _ in range(args.repeats):
        for chunk in CHUNKS:
            took, scores[chunk] = prefill(chunk)
            seconds[chunk].append(took)
    print(json.dumps({
        "setting": args.setting, "tokens": args.tokens, "threads": args.threads, "repeats": args.repeats,
        "cpu": calibration.cpu_description(), "torch": torch.__version__, "model": DEFAULT_TARGET,
        "schedules": {str(chunk or "one pass"): {
            "best_s": round(min(seconds[chunk]), 3), "median_s": round(statistics.median(seconds[chunk]), 3),
            "all_s": [round(s, 3) for s in seconds[chunk]],
            "max_score_difference_from_one_pass": float(np.abs(scores[chunk] - scores[None]).max())}
            for chunk in CHUNKS},
    }))


if __name__ == "__main__":
    main()
