"""The engine's methods with target and draft forced onto one calibrated setting, beside the
benchmark's baselines on that runtime: what choosing that setting for these edits would give.

`blazedit bench` runs the default path and ``METHOD@RUNTIME``, where a named llama.cpp
runtime means its exact kernels; this script reaches the settings only ``auto`` weighs (e.g.
``llama.cpp fast``: llama.cpp's own kernels), with the costs from this machine's calibration.
Every run pays its whole prefill (caches emptied), as in the benchmark. One JSON line per run:

    python bench/on_setting.py bench/data/writing-edits.jsonl --setting "llama.cpp fast" \\
        --methods llama-regular regular pld blazedit > bench/results/writing-edits-llama-fast.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from engine import calibration
from engine.bench import WARM_UP, Bench
from engine.calibration import Setting
from engine.catalogue import DEFAULT_DRAFT, DEFAULT_TARGET
from engine.local_engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", type=Path)
    parser.add_argument("--setting", default="llama.cpp fast", help="as `blazedit engine calibrate` names it")
    parser.add_argument("--methods", nargs="+", default=["llama-regular", "regular", "pld", "blazedit"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtime, _, dtype = args.setting.partition(" ")
    setting = Setting(runtime, dtype)
    costs = calibration.ensure(DEFAULT_TARGET, DEFAULT_DRAFT, [setting], [setting], device=None, threads=args.threads,
                               notify=lambda line: print(line, file=sys.stderr))
    engine = Engine(calibration.load_on(DEFAULT_TARGET, setting, None, args.threads),
                    calibration.load_on(DEFAULT_DRAFT, setting, None, args.threads),
                    costs=(costs.target[str(setting)].forward_cost(), costs.draft[str(setting)].forward_cost()))
    bench = Bench(engine, lambda other: sys.exit(f"{other}: only methods on {args.setting} run here"))
    items = [json.loads(line) for line in args.items.open()]
    for method in args.methods:
        bench.run(WARM_UP, method)
    for item in items:
        for method in args.methods:
            tokens, text, reason, stats = bench.run(item, method)
            print(json.dumps({
                "item": item["id"], "method": method, "setting": args.setting, "seconds": round(stats["seconds"], 2),
                "tokens": len(tokens), "chars_per_second": round(len(text) / stats["seconds"], 1),
                "target_forward_passes": stats.get("target_forward_passes"), "drafted": stats.get("drafted"),
                "accepted": stats.get("accepted"), "finish_reason": reason,
                "cpu": calibration.cpu_description(), "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()
