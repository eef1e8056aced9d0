"""Print the edit mix that ``auto`` predicts over (engine/calibration.py ``MIX``).

The edits of three committed runs: eight requests commits spread over their copy ratios,
four HumanEvalFix items, the two writing-heavy edits. For each, the prompt's tokens (as the
engine builds it, the default pair's tokenizer) and what the target itself wrote there by
plain decoding (`regular`): its tokens and the share of its text copied from the file. The
model's own output, not the dataset's reference: a small model edits far less than the
real commit did (copy ratio 0.95-1.0 on requests, against 0.57-1.0 for the references).
Run from a checkout: ``python bench/edit_mix.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine import models

from engine.catalogue import DEFAULT_TARGET
from engine.client import prompts

BENCH = Path(__file__).parent
RUNS = {"requests-spread8-llama": "edits-requests.jsonl", "humanevalfix-quick-llama": "edits-humanevalfix.jsonl",
        "writing-edits": "writing-edits.jsonl"}


def main() -> None:
    tokenizer = models.load(DEFAULT_TARGET, runtime="llama.cpp").tokenizer
    for run, dataset in RUNS.items():
        items = {item["id"]: item for item in map(json.loads, (BENCH / "data" / dataset).read_text().splitlines())}
        for record in json.loads((BENCH / "results" / run / "results.json").read_text())["records"]:
            if record["method"] != "regular":
                continue
            item = items[record["item"]]
            prompt = prompts.build(item["before"], item["instruction"], item["path"])
            chat = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
            prompt_tokens = len(tokenizer(chat + prompt.reply_prefix, add_special_tokens=False)["input_ids"])
            print(f"MixEdit({prompt_tokens}, {record['tokens']}, {record['copy_ratio']:.3f}),  # {item['id']}")


if __name__ == "__main__":
    main()
