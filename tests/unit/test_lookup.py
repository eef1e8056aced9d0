from hypothesis import given
from hypothesis import strategies as st

from engine.decoding.cached_model import common_prefix_length
from engine.decoding.lookup import NgramIndex


def test_proposes_continuation_of_longest_match():
    index = NgramIndex(max_ngram=3)
    index.extend([1, 2, 3, 4, 5, 9, 2, 3, 7, 8])
    assert index.propose([0, 2, 3], 2) == [4, 5]  # first match of (2, 3)
    assert index.propose([9, 2, 3], 3) == [7, 8]  # longer match (9, 2, 3) wins


def test_prefers_to_continue_forward_from_the_last_match():
    index = NgramIndex(max_ngram=1)
    index.extend([5, 1, 5, 2, 5, 3])
    assert index.propose([5], 1) == [1]
    index.pointer = 4
    assert index.propose([5], 1) == [3]


def test_a_copy_runs_on_past_a_repeat_of_what_it_copies():
    R = [8, 9]  # a line the file repeats
    index = NgramIndex(max_ngram=2)
    index.extend([1, 2, *R, 3, *R, 4, *R, 6])
    written = [1]
    assert index.propose(written, 6) == [2, *R, 3, *R]  # copying from the start of the file
    written += [2, *R, 3, *R]  # accepted whole
    # R occurs first right after the 2, but the copy has run on to the R before the 4
    assert index.propose(written, 1) == [4]
    written += [5, *R]  # an edit the same length as what it replaced (5 for 4): still in step
    assert index.propose(written, 1) == [6]


def test_a_copy_resumes_after_an_insertion_where_it_stopped():
    R = [8, 9]
    index = NgramIndex(max_ngram=2)
    index.extend([1, 2, *R, 3, *R, 4])
    written = [1]
    assert index.propose(written, 4) == [2, *R, 3]
    written += [2, *R, 3, 7, *R]  # the copy, then an inserted 7, then the file's R again
    assert index.propose(written, 1) == [4]  # not the R the copy went through before the 7


def test_the_source_is_preferred_to_the_generated_text():
    index = NgramIndex(max_ngram=1)
    index.extend([5, 1, 6, 2])  # the source (prompt)
    index.extend([5, 1, 6, 2, 6, 3, 7])  # then generated: 6 3 7, which repeats 6
    assert index.propose([6], 2) == [2, 6]  # the source's 6, not the generated one
    assert index.pointer == 3
    assert index.propose([3], 2) == [7]  # only in the generated text: used, pointer left alone
    assert index.pointer == 3


def test_copies_out_of_the_source_stop_at_copy_end():
    index = NgramIndex(max_ngram=1, copy_end=4)
    index.extend([5, 1, 2, 3, 9, 9, 9])  # the file ends after 3; then the instruction
    assert index.propose([5], 10) == [1, 2, 3]
    index.extend([5, 1, 2, 3, 9, 9, 9, 7, 5])  # generated text: not cut
    assert index.propose([7], 10) == [5]


def test_copies_out_of_the_source_begin_at_copy_start():
    """A region edit copies from the region's own fence, never from the file before it."""
    index = NgramIndex(max_ngram=1, copy_end=9, copy_start=5)
    index.extend([5, 1, 2, 3, 8, 5, 1, 4, 9, 9])  # file [1 2 3], then the region [1 4] ending at 9
    assert index.propose([5], 10) == [1, 4, 9]  # from the region (to copy_end), though the file's 5 comes first
    assert index.propose([2], 10) == []  # 2 lies only in the file
    index.extend([5, 1, 2, 3, 8, 5, 1, 4, 9, 9, 2, 6, 2])  # generated text: still used
    assert index.propose([2], 10) == [6, 2]


def test_a_prediction_is_a_source_ahead_of_the_prompt_and_copies_stop_at_its_end():
    index = NgramIndex(max_ngram=1, prediction=[5, 1, 2, 3])
    index.extend([7, 5, 8])  # the prompt
    assert index.propose([5], 10) == [1, 2, 3]  # the prediction's 5 comes first; its end ends the copy
    assert index.propose([7], 10) == [5, 8]  # the prompt is a source as before
    index.extend([7, 5, 8, 4, 6])  # generated
    assert index.propose([7, 5, 8, 4], 10) == [6]  # positions beyond the prediction stay in step with the text


def test_copy_start_and_copy_end_count_in_the_prompt_after_a_prediction():
    index = NgramIndex(max_ngram=1, copy_end=9, copy_start=5, prediction=[7, 7])
    index.extend([1, 2, 3, 5, 6, 8, 5, 4, 9, 9])  # file [1 2 3 5 6], then the region [8 5 4] ending at 9
    assert index.propose([5], 10) == [4, 9]  # from the region's 5 (to copy_end), not the file's
    assert index.propose([3], 10) == []  # 3 lies only in the file, and what follows it too


def test_nothing_to_propose():
    index = NgramIndex(max_ngram=2)
    index.extend([1, 2])
    assert index.propose([3], 4) == []
    assert index.propose([1], 0) == []


@given(st.lists(st.integers(0, 3), max_size=30), st.lists(st.integers(0, 3), max_size=30))
def test_common_prefix_length(a, b):
    n = common_prefix_length(a, b)
    assert a[:n] == b[:n]
    assert n == min(len(a), len(b)) or a[n] != b[n]
