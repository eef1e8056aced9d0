"""The tiny model written as GGUF must be the same model on llama.cpp as in torch,
or decoding tests on llama.cpp would test a different model."""

import numpy as np
import pytest
import torch

from engine import models
from engine.tiny_gguf import write_tiny_gguf

llama_cpp = pytest.importorskip("llama_cpp")


def _on_llama_cpp(seed, tmp_path):
    model, tok = models._tiny_random(seed)
    path = tmp_path / f"tiny-{seed}.gguf"
    write_tiny_gguf(model, tok, path)
    # llama.cpp caches K and V in float16 by default: logits then drift by ~0.3%, enough
    # to flip near-tied greedy choices. A float32 cache matches torch to ~1e-6.
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, n_threads=1, n_threads_batch=1, logits_all=True,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    return model.eval(), tok, llm


@pytest.mark.parametrize("seed", [0, 2])
def test_llama_cpp_logits_match_torch(seed, tmp_path):
    model, _, llm = _on_llama_cpp(seed, tmp_path)
    rng = np.random.default_rng(seed)
    try:
        for _ in range(3):
            ids = rng.integers(0, 256, size=50).tolist()
            with torch.no_grad():
                expected = model(torch.tensor([ids])).logits[0].numpy()
            llm.reset()
            llm.eval(ids)
            got = np.asarray(llm.scores[: len(ids)])
            assert (got.argmax(-1) == expected.argmax(-1)).all()
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    finally:
        llm.close()


def test_llama_cpp_tokenizes_like_the_byte_tokenizer(tmp_path):
    _, tok, llm = _on_llama_cpp(0, tmp_path)
    text = "def f(x):\n    return x  # ünïcode → ok\t<|im_start|>"
    try:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(
            text, add_special_tokens=False, split_special_tokens=True)
        chat = "<|im_start|>user\nhi<|im_end|>\n"
        ids = llm.tokenize(chat.encode(), add_bos=False, special=True)
        assert ids == tok.encode(chat, add_special_tokens=False)
        assert llm.detokenize(ids, special=True).decode() == chat
        assert llm.token_eos() == tok.eos_token_id
    finally:
        llm.close()
