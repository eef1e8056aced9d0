"""Print the edit mix that ``auto`` predicts over (engine/calibration.py ``MIX``).

Items of the in-repo datasets (four long commits, two short fixes, both writing-heavy edits),
evenly spread over their reference copy ratios: the
prompt's tokens (as the engine builds it), the reference output's tokens, and the share of
it copied from the file. The writing-heavy edits have no reference output: theirs is what
`regular` wrote in the committed run bench/results/writing-edits/. Run from a checkout:
``python bench/edit_mix.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine import models, prompts
from engine.bench import copy_ratio, evenly, load_items
from engine.catalogue import DEFAULT_TARGET

DATA = Path(__file__).parent / "data"
WRITTEN = Path(__file__).parent / "results" / "writing-edits" / "results.json"
PER_DATASET = {"edits-requests.jsonl": 4, "edits-humanevalfix.jsonl": 2, "writing-edits.jsonl": 2}


def main() -> None:
    tokenizer = models.load(DEFAULT_TARGET, runtime="llama.cpp").tokenizer

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    written = {r["item"]: r for r in json.loads(WRITTEN.read_text())["records"] if r["method"] == "regular"}
    for name, count in PER_DATASET.items():
        items = evenly(load_items(DATA / name, None, None), count, key=lambda item: item["copy_ratio"])
        for item in items:
            prompt = prompts.build(item["before"], item["instruction"], item["path"])
            chat = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
            if item["after"]:
                output, copied = tokens(item["after"]), copy_ratio(item["before"], item["after"])
            else:
                output, copied = written[item["id"]]["tokens"], written[item["id"]]["copy_ratio"]
            print(f"MixEdit({tokens(chat + prompt.reply_prefix)}, {output}, {copied:.2f}),  # {item['id']}")


if __name__ == "__main__":
    main()
