"""A completion job's prompt, streaming hold-back and prediction accounting (engine/completion.py)."""

from engine import models
from engine.completion import Completion, prediction_usage, render, safe_length

TOK = models.byte_tokenizer()


def test_a_chat_is_rendered_with_the_template_and_a_last_assistant_message_is_continued():
    user = [{"role": "user", "content": "hi"}]
    assert render(TOK, Completion("j", messages=user)) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    prefilled = Completion("j", messages=user + [{"role": "assistant", "content": "```py\n"}])
    assert render(TOK, prefilled) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n```py\n"
    assert render(TOK, Completion("j", prompt="raw text")) == "raw text"


def test_a_tail_that_could_begin_a_stop_string_is_held_back():
    assert safe_length("abc\n``", ("\n```",)) == 3
    assert safe_length("abc\n`x", ("\n```",)) == 6
    assert safe_length("abc", ()) == 3
    assert safe_length("xEN", ("END", "N!")) == 1  # the longest held tail wins


def test_prediction_tokens_that_appear_in_the_completion_in_order_are_accepted():
    assert prediction_usage([1, 2, 3, 4, 5], [1, 2, 9, 4, 5, 6]).__dict__ == {"accepted": 4, "rejected": 1}
    assert prediction_usage([], [1, 2]).__dict__ == {"accepted": 0, "rejected": 0}
    assert prediction_usage([1, 2], []).__dict__ == {"accepted": 0, "rejected": 2}
