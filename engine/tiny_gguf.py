"""The tiny test model as a GGUF file, so decoding can be tested on llama.cpp in seconds.

A cut-down ``convert_hf_to_gguf.py`` for Qwen2 (which needs no Q/K permutation): float32
tensors under llama.cpp's names, the hyperparameters it reads, and the byte vocabulary.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import gguf


def write_tiny_gguf(model, tokenizer, path: pathlib.Path) -> None:
    """Write a transformers Qwen2ForCausalLM (tiny, float32) and its byte tokenizer as a GGUF llama.cpp loads.

    Written to a temporary file and renamed into place, so a crash never leaves a truncated model.
    """
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)

        special = set(tokenizer.all_special_ids)
        ids = range(len(tokenizer))
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokenizer.convert_ids_to_tokens(list(ids)))
        writer.add_token_types(
            [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in ids]
        )
        # llama.cpp refuses a BPE vocabulary without merges, and gguf cannot write an empty
        # array; a merge of two control tokens never fires, as BPE starts from single bytes.
        writer.add_token_merges([f"{tokenizer.pad_token} {tokenizer.eos_token}"])
        writer.add_eos_token_id(tokenizer.eos_token_id)
        writer.add_pad_token_id(tokenizer.pad_token_id)
        # Without a BOS id llama.cpp assumes token 11 (a byte here); Qwen's own GGUFs
        # name <|endoftext|> and never add it.
        writer.add_bos_token_id(tokenizer.pad_token_id)
        writer.add_add_bos_token(False)

        for name, tensor in model.state_dict().items():
            gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ValueError(f"no llama.cpp name for tensor {name}")
            writer.add_tensor(gguf_name, tensor.detach().float().cpu().numpy())

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
