"""The matmul attention for short passes computes what SDPA computes."""

import pytest
import torch

from engine.runtimes.cpu_attention import SHORT_QUERY, short_query_attention


class Module:
    num_key_value_groups = 3
    is_causal = True


def reference(query, key, value, mask):
    key, value = (t.repeat_interleave(Module.num_key_value_groups, dim=1) for t in (key, value))
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return out.transpose(1, 2)


@pytest.mark.parametrize("q, cached", [(1, 40), (5, 40), (7, 0), (SHORT_QUERY, 9)])
def test_matches_sdpa_on_causal_passes(q, cached):
    torch.manual_seed(0)
    n = cached + q
    query = torch.randn(1, 6, q, 16)
    key, value = torch.randn(1, 2, n, 16), torch.randn(1, 2, n, 16)
    causal = torch.ones(q, n, dtype=torch.bool).tril(cached)
    expected = reference(query, key, value, causal)
    # as transformers passes it: a boolean mask, or none where the pass is plainly causal
    for mask in (causal[None, None], None) if cached == 0 or q == 1 else (causal[None, None],):
        out, _ = short_query_attention(Module(), query, key, value, mask, scaling=16 ** -0.5)
        torch.testing.assert_close(out, expected)


def test_a_mask_that_hides_cached_keys_is_honoured():
    """Only the new tokens' causal block is masked when every cached key is visible;
    a mask that hides some (padding, another sequence's tokens) is applied whole."""
    torch.manual_seed(0)
    q, cached = 5, 40
    query = torch.randn(1, 6, q, 16)
    key, value = torch.randn(1, 2, cached + q, 16), torch.randn(1, 2, cached + q, 16)
    mask = torch.ones(q, cached + q, dtype=torch.bool).tril(cached)
    mask[:, 3:7] = False
    out, _ = short_query_attention(Module(), query, key, value, mask[None, None], scaling=16 ** -0.5)
    torch.testing.assert_close(out, reference(query, key, value, mask))


def test_long_passes_go_to_sdpa():
    torch.manual_seed(0)
    q = SHORT_QUERY + 1
    query, key, value = torch.randn(1, 6, q, 16), torch.randn(1, 2, q, 16), torch.randn(1, 2, q, 16)
    out, _ = short_query_attention(Module(), query, key, value, None, scaling=16 ** -0.5)
    torch.testing.assert_close(out, reference(query, key, value, torch.ones(q, q, dtype=torch.bool).tril()))
