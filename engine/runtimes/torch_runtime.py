"""The transformers/PyTorch runtime: any causal LM with a DynamicCache."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import DynamicCache

from engine.models import LoadedModel


@dataclass
class TorchSnapshot:
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    length: int

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


class TorchRuntime:
    name = "torch"

    def __init__(self, loaded: LoadedModel):
        self.model = loaded.model
        self.device = loaded.device
        self.on_cpu = torch.device(loaded.device).type == "cpu"
        self.context_tokens = loaded.context_tokens
        self.cache = DynamicCache(config=self.model.config)
        self._cached = 0
        # transformers renamed ``past_key_values`` to ``cache`` (the old name goes in 5.40)
        self._cache_argument = "cache" if "cache" in inspect.signature(self.model.forward).parameters \
            else "past_key_values"

    @property
    def cached(self) -> int:
        return self._cached

    def forward(self, tokens: Sequence[int], keep: int) -> list[int]:
        return self._logits(tokens, keep).argmax(dim=-1).tolist()

    def logits(self, tokens: Sequence[int], keep: int) -> np.ndarray:
        return self._logits(tokens, keep).float().cpu().numpy()

    @torch.inference_mode()
    def _logits(self, tokens: Sequence[int], keep: int) -> torch.Tensor:
        # input_ids: [1, k]; logits: [keep, vocab] (only the positions we read)
        assert 1 <= keep <= len(tokens), (keep, len(tokens))
        if len(tokens) == 1 and self.on_cpu:
            # A one-token step goes as a two-token pass (the token twice) whose second position
            # is dropped: on a CPU one row takes other matmul kernels than two or more, which
            # round differently (and run slower); two rows take the kernels every pass takes.
            logits = self._logits([tokens[0], tokens[0]], 2)[:1]
            self.truncate(self._cached - 1)
            return logits
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        positions = torch.arange(self._cached, self._cached + len(tokens), device=self.device).unsqueeze(0)
        out = self.model(
            input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=keep,
            **{self._cache_argument: self.cache},
        )
        self._cached += len(tokens)
        return out.logits[0]

    def truncate(self, length: int) -> None:
        assert 0 <= length <= self._cached, (length, self._cached)
        if length == 0:
            self.cache = DynamicCache(config=self.model.config)
        elif length < self._cached:
            self.cache.crop(length - self._cached)  # negative: tokens to remove (transformers 5.x)
        self._cached = length

    def snapshot(self, length: int) -> TorchSnapshot:
        assert 0 < length <= self._cached, (length, self._cached)
        layers = [
            (layer.keys[..., :length, :].clone(), layer.values[..., :length, :].clone())
            for layer in self.cache.layers
            if layer.is_initialized
        ]
        return TorchSnapshot(layers, length)

    def restore(self, snapshot: TorchSnapshot) -> None:
        self.cache = DynamicCache(config=self.model.config)
        for index, (keys, values) in enumerate(snapshot.layers):
            self.cache.update(keys.clone(), values.clone(), index)
        self._cached = snapshot.length
