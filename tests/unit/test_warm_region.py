"""Prompt warming and region edits on the tiny models, both runtimes: a warmed edit reuses
the warmed prefix and writes exactly the tokens of a cold one; a warm stops between
chunks and what it prefilled is reused; a region edit is as lossless as a whole-file
one, and its events carry the region's text."""

import pytest
from test_lossless import LINES, cold, engines  # noqa: F401 - engines is a fixture

from engine.client import prompts
from engine.client.errors import JobError
from engine.client.protocol import METHODS, DecodingOptions, Region
from engine.decoding.cached_model import common_prefix_length
from engine.local_engine import EditStep, Result
from engine.prefix_cache import PrefixCache

TEXT = "\n".join(LINES * 4) + "\n"
OTHER = "other = 2\n" * 12
OPTIONS = DecodingOptions(max_new_tokens=40)


def fresh(engine, chunk: int = 100):
    """Cold, with a prefix cache to file warms in."""
    cold(engine).prefix_cache = PrefixCache(1 << 30)
    engine.prefill_chunk_tokens = chunk
    return engine


def run(engine, text=TEXT, method="blazedit", region=None, instruction="add types") -> Result:
    *_, result = engine.edit(text, instruction, path="t.py", method=method, options=OPTIONS, region=region)
    return result


def passes(engine) -> tuple[int, int]:
    return engine.target_model.forward_passes, engine.draft_model.forward_passes


def region_of(text: str, first: int, last: int) -> Region:
    start, end = prompts.line_region(text, first, last)
    return Region(start=start, end=end)


def test_the_warmed_prefix_begins_every_edit_of_the_file(engines):
    engine = engines["same"]
    prefix = engine.warm_prefix(TEXT, "t.py")
    assert len(prefix) > len(TEXT.encode())  # system message and the file (byte tokenizer: a token per byte)
    for region in (None, (0, 0), prompts.line_region(TEXT, 3, 9)):
        ids = engine.encode(prompts.build(TEXT, "anything", "t.py", region=region)).ids
        assert common_prefix_length(ids, prefix) == len(prefix) < len(ids)


@pytest.mark.parametrize("region", [None, (5, 12)], ids=["whole", "region"])
def test_a_warmed_edit_reuses_the_prefix_and_matches_a_cold_run(engines, region):
    engine = fresh(engines["noisy"])
    region = region and region_of(TEXT, *region)
    warmed = engine.warm(TEXT, path="t.py")
    assert warmed == len(engine.warm_prefix(TEXT, "t.py"))
    assert engine.warm(OTHER, path="o.py") > 0  # the live caches now hold another file
    result = run(engine, region=region)
    assert result.stats.cached_tokens == warmed  # restored from the prefix cache
    assert result.tokens == run(fresh(engine), region=region).tokens
    assert run(fresh(engine), region=region).stats.cached_tokens == 0


def test_warming_a_cached_prefix_costs_nothing(engines):
    engine = fresh(engines["same"])
    warmed = engine.warm(TEXT, path="t.py")
    before = passes(engine)
    assert engine.warm(TEXT, path="t.py") == warmed and passes(engine) == before
    run(engine, OTHER)
    before = passes(engine)
    assert engine.warm(TEXT, path="t.py") == warmed and passes(engine) == before  # saved in the prefix cache


def test_a_warm_stops_between_chunks_and_the_edit_reuses_what_it_prefilled(engines):
    engine = fresh(engines["noisy"], chunk=64)
    polls = []

    def should_stop():
        polls.append(passes(engine))
        return len(polls) > 2

    before = passes(engine)
    assert engine.warm(TEXT, path="t.py", should_stop=should_stop) == 64  # target, then draft, one chunk each
    assert polls == [before, (before[0] + 1, before[1]), (before[0] + 1, before[1] + 1)]  # one pass between polls
    result = run(engine)
    assert result.stats.cached_tokens == 64
    assert result.tokens == run(fresh(engine)).tokens


def test_warming_a_changed_file_prefills_only_from_the_change(engines):
    engine = fresh(engines["same"], chunk=64)
    engine.warm(TEXT, path="t.py")
    run(engine, OTHER)  # the live caches now hold another file: the warm restores from the prefix cache
    changed = TEXT[:-len("print(x)\n\n")] + "print(y)\n\n"
    before = passes(engine)
    assert engine.warm(changed, path="t.py") == len(engine.warm_prefix(changed, "t.py"))
    assert passes(engine) == (before[0] + 1, before[1] + 1)  # one chunk each: the tail from the change on


def test_a_file_too_large_for_the_context_is_not_warmed(engines):
    engine = fresh(engines["same"])
    before = passes(engine)
    assert engine.warm("x = 1\n" * 6000, path="t.py") == 0 and passes(engine) == before


@pytest.mark.parametrize("draft", ["same", "noisy"])
@pytest.mark.parametrize("lines", [(1, 1), (2, 7), (30, 36), (36, 36)])
def test_region_edits_emit_the_greedy_tokens_with_every_method(engines, draft, lines):
    engine = engines[draft]
    region = region_of(TEXT, *lines)
    reference = run(cold(engine), method="regular", region=region)
    for method in METHODS[1:]:
        result = run(cold(engine), method=method, region=region)
        assert result.tokens == reference.tokens, method
        assert (result.text, result.finish_reason) == (reference.text, reference.finish_reason), method


def test_a_region_edit_streams_the_regions_text_in_the_files_line_endings(engines):
    engine = cold(engines["same"])
    crlf = TEXT.replace("\n", "\r\n")
    events = list(engine.edit(crlf, "add types", path="t.py", method="pld", options=OPTIONS,
                              region=region_of(crlf, 4, 6)))
    result = events[-1]
    reply = engine.tokenizer.decode(result.tokens)
    assert "`" not in reply  # (a random model writes no fence: the reply is all region text)
    assert result.text == reply.replace("\n", "\r\n")
    assert result.text.startswith("".join(e.text for e in events if isinstance(e, EditStep)))


def test_a_region_off_line_boundaries_is_refused_before_any_event(engines):
    engine = engines["same"]
    with pytest.raises(JobError) as refused:
        next(engine.edit(TEXT, "x", region=Region(start=1, end=5)))
    assert refused.value.code == "bad_request" and "start 1" in refused.value.message
