"""What moving an edit to the second target midway gives, replayed on recorded passes.

``trace`` runs `blazedit` on the benchmark's edits (requests --spread 8, HumanEvalFix --quick,
the writing-heavy set) twice, every run cold: on the default path's target with the move
off, and on the second target alone (its calibrated setting, as bench/on_setting.py runs
it), recording each target pass (tokens proposed, accepted, when it ended). ``replay``
runs decoding/handover.py's rule over the first trace, under variants of its constants, and
estimates each edit's time had it moved where the rule says: the time to that pass, the
second target's read of the prompt and the reply so far (calibrated), and the rest of the
reply at the rate the second target's own run kept. Each edit's time is shown against the
faster of the two whole runs (1.00: the right choice, made from the start), with the token it
moved at, or, where it stayed, [the highest forecast over the move's cost] it came to.

    python bench/handover_replay.py trace bench/results/handover-traces
    python bench/handover_replay.py replay bench/results/handover-traces
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from engine import calibration
from engine.bench import QUICK_IDS, WARM_UP, Bench, load_items
from engine.catalogue import DEFAULT_DRAFT, DEFAULT_TARGET
from engine.decoding import handover, strategies
from engine.local_engine import Engine

DATA = Path(__file__).parent / "data"
THREADS = 2


def items() -> list[dict]:
    return (load_items(DATA / "edits-requests.jsonl", None, None, spread=8)
            + load_items(DATA / "edits-humanevalfix.jsonl", QUICK_IDS["edits-humanevalfix"], None)
            + load_items(DATA / "writing-edits.jsonl", None, None))


def trace(out: Path) -> None:
    passes: list[tuple[int, int, float]] = []
    observe = strategies.Blazedit.observe

    def recording(self, proposed: int, accepted: int) -> None:
        passes.append((proposed, accepted, time.perf_counter()))
        observe(self, proposed, accepted)

    strategies.Blazedit.observe = recording
    first = Engine.load(threads=THREADS)
    if first.choice is None or first.choice.second is None:
        raise SystemExit("this machine's calibration names no second target: nothing to replay")
    first.second = None  # the move off: the whole edit on the first target
    second = first.choice.second
    measured = calibration.ensure(DEFAULT_TARGET, DEFAULT_DRAFT, [second], [second], device=None, threads=THREADS)
    alone = Engine(calibration.load_on(DEFAULT_TARGET, second, None, THREADS),
                   calibration.load_on(DEFAULT_DRAFT, second, None, THREADS),
                   costs=(measured.target[str(second)].forward_cost(), measured.draft[str(second)].forward_cost()))
    out.mkdir(parents=True, exist_ok=True)
    for name, engine in (("first", first), ("second", alone)):
        bench = Bench(engine, lambda other: None)
        bench.run(WARM_UP, "blazedit")
        with (out / f"{name}.jsonl").open("w") as f:
            for item in items():
                passes.clear()
                tokens, _, _, stats = bench.run(item, "blazedit")
                f.write(json.dumps({
                    "item": item["id"], "setting": str(second) if name == "second" else str(first.choice.target),
                    "seconds": stats["seconds"], "prefill_seconds": stats["prefill_seconds"],
                    "prompt_tokens": stats["prompt_tokens"], "tokens": len(tokens),
                    "file_tokens": len(engine.tokenizer(item["before"], add_special_tokens=False)["input_ids"]),
                    "passes": passes, "cpu": calibration.cpu_description(), "threads": THREADS}) + "\n")
                print(f"{name} {item['id']}: {stats['seconds']:.1f} s", flush=True)


def replay(traces: Path) -> None:
    first = [json.loads(line) for line in (traces / "first.jsonl").open()]
    second = {run["item"]: run for run in map(json.loads, (traces / "second.jsonl").open())}
    measured = calibration.load(calibration.machine_key(DEFAULT_TARGET, DEFAULT_DRAFT, None, THREADS))
    if measured is None:
        raise SystemExit("no calibration of the default pair on this machine: run `blazedit engine calibrate`")
    here = measured.target[first[0]["setting"]]
    there = measured.target[next(iter(second.values()))["setting"]]
    print(f"| lookahead | least tokens | mean x the faster run | {' | '.join(r['item'][-24:] for r in first)} |")
    print("|---|---|---|" + "---|" * len(first))
    for lookahead in (1, 2, 3):
        for least in (16, 32, 64):
            handover.LOOKAHEAD, handover.MIN_TOKENS = lookahead, least
            cells, ratios = [], []
            for run in first:
                alone = second[run["item"]]
                rate = (alone["seconds"] - alone["prefill_seconds"]) / alone["tokens"]
                # a second target not loaded yet, so holding nothing: every replayed move reads the whole prompt
                rule = handover.Handover(handover.SecondTarget(lambda: None, there.forward_cost(),
                                                               there.prefill_per_token),
                                         here.forward_cost(), run["file_tokens"])
                start = run["passes"][0][2] - run["prefill_seconds"]  # the first pass ends the prefill
                seconds, written, peak = run["seconds"], 0, 0.0
                for proposed, accepted, ended in run["passes"]:  # as the loop: the prefill's pass too
                    rule.observe(proposed, accepted)
                    written += accepted + 1
                    seq = [0] * (run["prompt_tokens"] + written)
                    if rule.due(seq, written):
                        seconds = (ended - start + len(seq) * there.prefill_per_token
                                   + max(run["tokens"] - written, 0) * rate)
                        break
                    if written >= least:
                        peak = max(peak, rule.pressure(seq, written))
                else:
                    written = 0
                ratios.append(seconds / min(run["seconds"], alone["seconds"]))
                # moved: at which token; stayed: how near the forecast came to the move's cost
                cells.append(f"{ratios[-1]:.2f} " + (f"(at {written})" if written else f"[{peak:.2f}]"))
            print(f"| {lookahead} | {least} | {sum(ratios) / len(ratios):.3f} | {' | '.join(cells)} |")
    print("\nwhole runs (s), first / second target: " + ", ".join(
        f"{r['item'][-24:]} {r['seconds']:.1f} / {second[r['item']]['seconds']:.1f}" for r in first))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("trace", "replay"))
    parser.add_argument("traces", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    trace(args.traces) if args.what == "trace" else replay(args.traces)


if __name__ == "__main__":
    main()
