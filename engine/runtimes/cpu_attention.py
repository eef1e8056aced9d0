"""Attention for short passes on a CPU: two matmuls instead of SDPA's CPU kernel.

Decoding and verification feed a few to a hundred tokens against a cache of thousands.
PyTorch's flash-attention kernel for the CPU is slow at that shape (one token after 3,000
cached: ~5 ms per layer, ~30% of the whole 1.5B forward pass on 2 cores), while scores
as one matmul over the grouped heads, a float32 softmax and a second matmul cost a
fraction of it. Long passes (prefill) keep SDPA, which is faster there and never
materialises a prompt-by-prompt score matrix.

Batch invariance. A query position must score the same in a one-token step and in any
verification pass, or methods depart from plain greedy decoding at near-ties. Scores and
softmax do (each row over its own keys, the others masked to zero weight), but the product
of weights and values sums over every cached key, and the CPU's matmul blocks that sum by
its length, which grows with the pass: so the values are summed in float32, in blocks of
``KEY_BLOCK`` keys from the first, the last block padded with zeros, every product the same
shape whatever the pass. With one-token steps run as two-row passes (torch_runtime.py),
the default 1.5B bf16 target then scores every pass of 2-257 tokens bit for bit as one-token
steps on an AVX-512 BF16 CPU, for ~4% more per token in passes of 40+ (bench/torch_invariance.py).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "blazedit_cpu"
SHORT_QUERY = 257  # longest pass (in new tokens) that takes the matmul path: a default proposal's 256, and one
KEY_BLOCK = 512  # keys per block of the values' sum (above)


def short_query_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """query [batch, heads, q, dim]; key, value [batch, kv_heads, n, dim]; attention_mask:
    SDPA's boolean mask (True: attend) broadcastable to [batch, heads, q, n], or None."""
    batch, heads, q, dim = query.shape
    if q > SHORT_QUERY or dropout or kwargs.get("output_attentions"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    kv_heads, n = key.shape[1], key.shape[2]
    groups = heads // kv_heads  # query heads sharing one key/value head, kept together (no repeat_kv copy)
    scores = torch.matmul(query.reshape(batch, kv_heads, groups * q, dim), key.transpose(2, 3))
    scores = scores.view(batch, heads, q, n).float() * (scaling if scaling is not None else dim ** -0.5)
    if attention_mask is None and q > 1:  # SDPA's mask is left out where plain causal (a pass on an empty cache)
        attention_mask = torch.ones(q, n, dtype=torch.bool, device=scores.device).tril(n - q)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask[..., :n], float("-inf"))
    weights = torch.softmax(scores, dim=-1).view(batch, kv_heads, groups * q, n)
    out = torch.zeros(batch, kv_heads, groups * q, dim, dtype=torch.float32, device=query.device)
    for start in range(0, n, KEY_BLOCK):
        w, v = weights[..., start:start + KEY_BLOCK], value[:, :, start:start + KEY_BLOCK].float()
        if (short := KEY_BLOCK - w.shape[-1]) > 0:
            w, v = torch.nn.functional.pad(w, (0, short)), torch.nn.functional.pad(v, (0, 0, 0, short))
        out += torch.matmul(w, v)
    return out.to(value.dtype).view(batch, heads, q, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, short_query_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
