"""An edit moves to the second target when its passes say that pays, once, and the output
stays the target's greedy output (float32, tiny models: exactly)."""

import dataclasses

import pytest

from engine import models
from engine.client.protocol import DecodingOptions
from engine.decoding.cached_model import CachedModel
from engine.decoding.cost import ForwardCost
from engine.decoding.handover import Handover, SecondTarget
from engine.local_engine import Engine, Result

# This machine's calibration (ms): bf16 torch batches, llama.cpp's Q4 fast kernels step cheaply.
TORCH = ForwardCost({1: 0.204, 16: 0.304, 128: 1.272})
LLAMA = ForwardCost({1: 0.039, 16: 0.356, 128: 2.266})
PREFILL = 0.0121  # llama.cpp's seconds per prompt token


class Held:
    """What a Handover reads of the second target's cache."""

    def __init__(self, tokens=()):
        self.tokens, self.settled = list(tokens), len(tokens)


def second(held=(), cost=LLAMA) -> SecondTarget:
    """A second target already loaded, holding ``held``."""
    target = SecondTarget(lambda: Held(held), cost, PREFILL)
    target.open()
    return target


def written_one_by_one(handover: Handover, seq: list[int], limit: int = 1000) -> int | None:
    """Tokens written by one-token passes when the handover falls due, if it does."""
    for written in range(1, limit):
        handover.observe(0, 0)
        if handover.due(seq, written):
            return written
    return None


def test_an_edit_that_writes_moves_once_the_forecast_pays_for_the_move():
    # Each one-token pass costs 0.165 s more here; reading 1,000 tokens there costs 12.1 s.
    # Forecast over twice the tokens so far: 2 x 0.165 x written >= 12.1 after 37 tokens.
    seq = list(range(1000))
    assert written_one_by_one(Handover(second(), here=TORCH), seq) == 37
    # a reply expected to end soon has too little ahead to win the move back
    assert written_one_by_one(Handover(second(), here=TORCH, expected_tokens=100), seq) is None
    # what the second target holds of the prompt need not be read again: sooner, but not before 32 tokens
    assert written_one_by_one(Handover(second(seq[:900]), here=TORCH), seq) == 32


def test_a_copying_edit_stays():
    handover = Handover(second(), here=TORCH)
    written = 0
    for _ in range(30):  # a few short passes at each edit point, long lookups taken whole between
        for proposed, accepted in ((0, 0), (0, 0), (128, 128)):
            handover.observe(proposed, accepted)
            written += accepted + 1
            assert not handover.due(list(range(300 + written)), written)
    assert handover.excess < 0


def test_a_long_lookup_that_runs_into_an_edit_counts_as_the_steps_it_gave():
    handover = Handover(second(), here=TORCH)
    handover.observe(127, 3)  # here a 128-token pass; there 4 one-token steps would have given the same
    assert handover.excess == pytest.approx(TORCH(128) - 4 * LLAMA(1))


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-random", runtime="torch")  # float32: both targets score exactly alike


def engine_loading(target, loaded):
    """An engine whose second target loads as ``loaded``, at a cost that makes a writing
    edit move at once; ``loads`` counts the loads asked for."""
    loads = []

    def load():
        loads.append(1)
        return loaded

    draft = ForwardCost({1: 0.0125, 128: 0.125})
    return Engine(target, target, costs=(TORCH, draft), second=(load, LLAMA, 1e-4)), loads  # the move costs ~nothing


TEXT = "def f(x):\n    return x + 1\n\nprint(f(2))\n"


@pytest.mark.parametrize("method", ["pld", "blazedit"])
def test_an_edit_that_writes_moves_and_keeps_the_greedy_tokens(tiny, method):
    engine, loads = engine_loading(tiny, tiny)
    *_, reference = engine.edit(TEXT, "rewrite it", path="t.py", method="regular", options=DecodingOptions())
    assert reference.stats.handover_tokens == 0  # plain greedy is the reference: it stays
    assert not loads and engine.second_target is None  # and the second target is not loaded for it
    engine.forget()
    *steps, result = engine.edit(TEXT, "rewrite it", path="t.py", method=method, options=DecodingOptions())
    assert isinstance(result, Result) and isinstance(reference, Result)
    assert 0 < result.stats.handover_tokens < result.stats.tokens  # moved midway
    assert result.tokens == reference.tokens
    assert result.stats.target_forward_passes >= len(steps)  # passes on both targets are counted
    assert len(loads) == 1 and engine.second_target.runtime == "torch"  # loaded at the move
    engine.forget()
    *_, again = engine.edit(TEXT, "rewrite it", path="t.py", method=method, options=DecodingOptions())
    assert again.tokens == reference.tokens and again.stats.handover_tokens == result.stats.handover_tokens
    assert len(loads) == 1  # once


def test_where_the_second_target_cannot_be_loaded_the_edit_stays(tiny):
    engine, loads = engine_loading(tiny, None)  # e.g. too little memory: _load_second says why and gives None
    *_, reference = engine.edit(TEXT, "rewrite it", path="t.py", method="regular", options=DecodingOptions())
    for _ in range(2):
        engine.forget()
        *_, result = engine.edit(TEXT, "rewrite it", path="t.py", method="pld", options=DecodingOptions())
        assert result.stats.handover_tokens == 0 and result.tokens == reference.tokens
    assert len(loads) == 1 and engine.second_target is None  # asked once, never again


def test_an_exact_target_learns_from_timings_only_where_it_never_moves(tiny):
    """Timings may steer the proposals of an exact target (they cannot change its output),
    unless the edit may move: where the move falls follows the passes, and it changes the text."""
    exact = dataclasses.replace(tiny, exact=True)
    assert Engine(exact, exact, costs=(TORCH, TORCH)).target_model.learns is not None
    engine, _ = engine_loading(exact, exact)
    assert engine.target_model.learns is None and engine.second is not None
