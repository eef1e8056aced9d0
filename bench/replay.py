"""Replay prompt lookup offline against recorded outputs, to compare lookup policies in seconds.

``record`` runs the engine once per item and saves the prompt's tokens, where copies
stop, and the target's output tokens. ``replay`` then runs the lookup (as Blazedit
uses it while the draft model is idle: lengths chosen by cost, up to
``max_draft_tokens``) against each recorded output with a fake target that accepts
what matches, charging each pass T(1 + proposed) from a benchmark's measured costs, and
beside it a lookup that knows where each copy ends (the bound on length choice).
Output tokens are the target's greedy choices, so a replay is exact for any lookup
policy; only the times are modelled.

    python bench/replay.py record DATASET --spread 24 --out outputs.jsonl [--runtime R]
    python bench/replay.py replay outputs.jsonl --costs bench/results/requests-spread8-torch/results.json

With a bench's results as costs, replay also prints that bench's ``blazedit`` against its
best PLD baseline, as run and with the bound's saving taken off each item's time.
"""

import argparse
import json
from pathlib import Path

from engine.client.protocol import DecodingOptions
from engine.decoding.cached_model import common_prefix_length
from engine.decoding.cost import ForwardCost
from engine.decoding.lookup import EncodedPrompt, NgramIndex
from engine.decoding.strategies import PromptLookup


def record(args):
    from engine.bench import load_items
    from engine.client import prompts
    from engine.local_engine import Engine

    engine = Engine.load(runtime=args.runtime, threads=args.threads)
    with open(args.out, "w") as out:
        for item in load_items(Path(args.dataset), None, args.limit, args.spread):
            encoded = engine.encode(prompts.build(item["before"], item["instruction"], item["path"]))
            ids, copy_end = encoded.ids, encoded.copy_end
            *_, result = engine.edit(item["before"], item["instruction"], path=item["path"], method="blazedit")
            out.write(json.dumps({"id": item["id"], "prompt": ids, "copy_end": copy_end,
                                  "output": result.tokens}) + "\n")
            print(item["id"], len(result.tokens), "tokens", flush=True)


def lookup_policy(rec, cost, options):
    """Seconds, passes and wasted tokens of the engine's lookup on one recorded output."""
    out, seq = rec["output"], list(rec["prompt"])
    strategy = PromptLookup(options, cost, EncodedPrompt(copy_end=rec["copy_end"]))
    seconds = passes = wasted = 0
    while len(seq) - len(rec["prompt"]) < len(out):
        done = len(seq) - len(rec["prompt"])
        proposal = strategy.propose(seq, len(out) - done)
        accepted = common_prefix_length(proposal, out[done:done + len(proposal)])
        seconds, passes, wasted = seconds + cost(1 + len(proposal)), passes + 1, wasted + len(proposal) - accepted
        strategy.observe(len(proposal), accepted)
        seq += out[done:done + accepted + 1]
    return seconds, passes, wasted


def knowing_bound(rec, cost, options):
    """Seconds and passes of a lookup that proposes exactly the part of its copy that is accepted."""
    out, seq = rec["output"], list(rec["prompt"])
    index = NgramIndex(options.max_ngram, rec["copy_end"])
    seconds = passes = 0
    while len(seq) - len(rec["prompt"]) < len(out):
        done = len(seq) - len(rec["prompt"])
        index.extend(seq)
        accepted = common_prefix_length(index.propose(seq, options.max_draft_tokens), out[done:])
        seconds, passes = seconds + cost(1 + accepted), passes + 1
        seq += out[done:done + accepted + 1]
    return seconds, passes


def ceiling(bench: dict, savings: dict[str, tuple[float, float]]) -> None:
    """The bench's ``blazedit`` had each item saved what knowing where copies end saves in
    the replay (the most any choice of lookup lengths could gain), and what proposing
    every output token right would save (verifying ``max_draft_tokens`` at a time: no
    speculation does better on these kernels), against the bench's best PLD baseline,
    transformers' or llama.cpp's (mean and P90 of chars/s, over the items replayed)."""
    from engine.bench import percentile

    def speeds(method, saving=lambda item: 0.0):
        rows = [r for r in bench["records"] if r["method"] == method and r["item"] in savings]
        return sorted(r["chars_per_second"] * r["seconds"] / (r["seconds"] - saving(r["item"])) for r in rows)

    pld = [m for m in bench["summary"] if m.startswith(("hf-pld", "llama-pld"))]
    if "blazedit" not in bench["summary"] or not pld:
        return
    best = max(pld, key=lambda m: bench["summary"][m]["mean"])
    base = speeds(best)
    if not base:
        print("no replayed item is in this bench: no bench figures")
        return
    for name, rows in (("blazedit", speeds("blazedit")),
                       ("blazedit, knowing", speeds("blazedit", lambda item: savings[item][0])),
                       ("every token right", speeds("blazedit", lambda item: savings[item][1]))):
        mean, p90 = sum(rows) / len(rows), percentile(rows, 0.1)
        print(f"{name:18} {len(rows)} items: {mean:6.1f} / {p90:6.1f} chars/s (mean / P90), "
              f"{mean / (sum(base) / len(base)):.2f}x / {p90 / percentile(base, 0.1):.2f}x {best}")


def replay(args):
    bench = json.loads(Path(args.costs).read_text())
    cost = ForwardCost({int(k): t for k, t in bench["forward_costs"]["T"].items()})
    options = DecodingOptions(num_tokens=DecodingOptions().max_draft_tokens)
    totals = [0.0, 0, 0, 0.0, 0]
    savings = {}
    for line in Path(args.outputs).read_text().splitlines():
        rec = json.loads(line)
        seconds, passes, wasted = lookup_policy(rec, cost, options)
        bound, bound_passes = knowing_bound(rec, cost, options)
        full, rest = divmod(len(rec["output"]), options.max_draft_tokens)
        every = full * cost(1 + options.max_draft_tokens) + (cost(1 + rest) if rest else 0)
        savings[rec["id"]] = (seconds - bound, seconds - every)
        print(f"{rec['id'][:48]:48} {len(rec['output']):5} tokens  lookup {seconds:6.1f} s {passes:4} passes "
              f"{wasted:5} wasted  |  knowing {bound:6.1f} s {bound_passes:4} passes")
        totals = [a + b for a, b in zip(totals, (seconds, passes, wasted, bound, bound_passes))]
    print(f"{'total':48} {'':12}  lookup {totals[0]:6.1f} s {totals[1]:4} passes {totals[2]:5} wasted  |  "
          f"knowing {totals[3]:6.1f} s {totals[4]:4} passes  (decoding only; prefill is the same for both)")
    ceiling(bench, savings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("dataset")
    rec.add_argument("--spread", type=int)
    rec.add_argument("--limit", type=int)
    rec.add_argument("--out", required=True)
    rec.add_argument("--runtime", default="auto", choices=("auto", "torch", "llama.cpp"))
    rec.add_argument("--threads", type=int)
    rep = commands.add_parser("replay")
    rep.add_argument("outputs")
    rep.add_argument("--costs", required=True, help="a bench results.json: its forward_costs (and its records)")
    args = parser.parse_args()
    record(args) if args.command == "record" else replay(args)


if __name__ == "__main__":
    main()
