"""Model specs → loaded (model, tokenizer).

A spec is one of:
- a packaged model (``qwen2.5-coder-1.5b``, ``qwen2.5-coder-0.5b``): GGUF files that
  PyPI packages carry in parts; joined in order, checked against a pinned sha256, and
  converted once to a bf16 safetensors copy in the user cache so later loads take seconds;
- a local Hugging Face model directory, or a local ``.gguf`` file;
- ``tiny-random`` or ``tiny-random:SEED``: a tiny randomly initialised Qwen2 model with a
  byte-level tokenizer, built in memory, for tests.

A loaded model runs on one of two runtimes. ``torch`` dequantises GGUFs to the bf16
cache; ``llama.cpp`` (the ``[llama]`` extra) runs the GGUF as it is. Which one ``auto``
takes is measured per machine (engine/calibration.py), never assumed here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import platformdirs
import torch

from engine.catalogue import PACKAGED, PackagedModel

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the converted cache layout changes


class ModelError(Exception):
    """A model spec that cannot be resolved or loaded; the message says how to fix it."""


TINY = "tiny-random"
RUNTIMES = ("torch", "llama.cpp")
LLAMA_MISSING = (
    "the llama.cpp runtime needs llama-cpp-python: pip install 'blazedit-lsp[llama]' "
    "(it builds from source: about 6 minutes on 2 cores, needs a C/C++ compiler)"
)
LLAMA_EXACT_INSTALL = (
    "CMAKE_ARGS=-DGGML_LLAMAFILE=OFF pip install --no-cache-dir --force-reinstall --no-deps "
    "llama-cpp-python==0.3.36"
)


@dataclass
class LoadedModel:
    spec: str
    runtime: str  # one of RUNTIMES
    model: object  # a torch.nn.Module, or llama_runtime.LlamaWeights
    tokenizer: object  # a transformers PreTrainedTokenizerFast
    device: str
    dtype: str  # torch's dtype, or the GGUF's quantisation under llama.cpp
    context_tokens: int
    eos: set[int]
    exact: bool = False  # a pass over k tokens scores bit for bit as k one-token steps (batch invariance)


def weights_bytes(loaded: LoadedModel) -> int:
    """What the loaded weights take: a torch module's parameters, a GGUF's file."""
    if loaded.runtime == "llama.cpp":
        return os.path.getsize(loaded.model.path)
    return sum(p.numel() * p.element_size() for p in loaded.model.parameters())


def memory_available() -> int | None:
    """Bytes of memory the kernel can give without swapping (Linux; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("BLAZEDIT_CACHE_DIR") or platformdirs.user_cache_dir("blazedit"))


def select_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]


def select_dtype(dtype: str | None, device: torch.device, spec: str) -> torch.dtype:
    """bf16 where the hardware runs it fast, else fp32. Tiny test models stay fp32:
    exact token identity across decoding methods is a float32 property."""
    if dtype:
        try:
            return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                    "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
        except KeyError:
            raise ModelError(f"unknown dtype {dtype!r}: use bf16, fp16 or fp32") from None
    if is_tiny(spec):
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_batch_invariant() -> bool:
    """Whether the installed llama.cpp can verify tokens exactly as one-token steps choose them."""
    from engine.runtimes.llama_runtime import batch_invariant

    return batch_invariant()


def load(spec: str, *, runtime: str = "torch", device: str | None = None, dtype: str | None = None,
         threads: int | None = None, fast_kernels: bool = False) -> LoadedModel:
    """``spec`` on ``runtime`` ("torch" or "llama.cpp"; Engine.load picks it for ``auto``).
    ``fast_kernels``: llama.cpp's own kernels rather than the batch-invariant ones."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}: use auto, {', '.join(RUNTIMES)}")
    if runtime == "llama.cpp":
        return _load_llama(spec, device, dtype, threads, fast_kernels)
    dev = select_device(device)
    dt = select_dtype(dtype, dev, spec)
    if is_tiny(spec):
        model, tok = _tiny_random(_tiny_seed(spec))
    elif spec in PACKAGED:
        model, tok = _load_dir(_converted_packaged(PACKAGED[spec]), dt)
    elif os.path.isdir(spec):
        model, tok = _load_dir(Path(spec), dt)
    elif spec.endswith(".gguf") and os.path.isfile(spec):
        model, tok = _load_dir(_converted_gguf(Path(spec)), dt)
    else:
        known = ", ".join([*PACKAGED, TINY, "a model directory", "a .gguf file"])
        raise ModelError(f"unknown model spec {spec!r}: use one of {known}")
    model = model.to(device=dev, dtype=dt).eval()
    if dev.type == "cpu":  # SDPA's CPU kernel is slow for short passes (cpu_attention.py)
        from engine.runtimes import cpu_attention

        model.set_attn_implementation(cpu_attention.NAME)
    context = int(getattr(model.config, "max_position_embeddings", 4096))
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = {tok.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
    return LoadedModel(spec, "torch", model, tok, str(dev), str(dt).removeprefix("torch."), context, eos)


def _load_llama(spec: str, device: str | None, dtype: str | None, threads: int | None,
                fast_kernels: bool) -> LoadedModel:
    if device not in (None, "cpu"):
        raise ModelError(f"the llama.cpp runtime runs on the CPU here; use --runtime torch for {device}")
    if dtype:
        raise ModelError("llama.cpp runs the GGUF's own quantisation; --dtype is for the torch runtime")
    try:
        from engine.runtimes.llama_runtime import REBUILD, LlamaWeights, batch_invariant
    except ImportError:
        raise ModelError(LLAMA_MISSING) from None
    exact = batch_invariant() and not fast_kernels
    if not exact and not fast_kernels:  # the exact kernels asked for, but this build has none
        log.warning("this llama-cpp-python was built with llamafile's sgemm, so a verification pass can round "
                    "differently from a one-token step and flip a near-tie (the output may differ between "
                    "methods and runs); for exact output rebuild it: %s", REBUILD)
    if is_tiny(spec):
        from engine.tiny_gguf import write_tiny_gguf

        model, tok = _tiny_random(_tiny_seed(spec))
        path = cache_dir() / "gguf" / f"{spec.replace(':', '-')}.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_gguf(model, tok, path)
    elif spec in PACKAGED:
        path = packaged_gguf(PACKAGED[spec])
        tok = _gguf_tokenizer(path, PACKAGED[spec].sha256)
    elif spec.endswith(".gguf") and os.path.isfile(spec):
        path = Path(spec)
        tok = _gguf_tokenizer(path, _sha256(path))
    else:
        raise ModelError(f"the llama.cpp runtime needs a GGUF model: a packaged one ({', '.join(PACKAGED)}), "
                         f"a .gguf file or {TINY}; not {spec!r}")
    try:
        weights = LlamaWeights(str(path), threads, float32_cache=is_tiny(spec), fast_kernels=fast_kernels)
    except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
        raise ModelError(f"llama.cpp cannot load {path}: {exc}") from exc
    eos = weights.eos | ({tok.eos_token_id} - {None})
    return LoadedModel(spec, "llama.cpp", weights, tok, "cpu", weights.description, weights.context_tokens, eos,
                       exact)


# ---------------------------------------------------------------- packaged GGUF


def _part_paths(pkg: PackagedModel) -> list[Path]:
    paths = []
    for n in range(1, pkg.parts + 1):
        try:
            module = importlib.import_module(f"{pkg.module_prefix}{n}")
        except ImportError:
            raise ModelError(
                f"model {pkg.name} is not installed (package {pkg.requirement(n)} is missing): "
                "pip install 'blazedit-lsp[models]'"
            ) from None
        paths.append(Path(module.get_part_path()))
    return paths


def packaged_gguf(pkg: PackagedModel) -> Path:
    """Join the parts into one GGUF in the cache, verifying the pinned sha256."""
    target = cache_dir() / "gguf" / f"{pkg.name}.gguf"
    stamp = target.with_suffix(".sha256")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == pkg.sha256:
        return target
    parts = _part_paths(pkg)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as out:
        try:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        except BaseException:
            os.unlink(out.name)
            raise
    if digest.hexdigest() != pkg.sha256:
        os.unlink(out.name)
        raise ModelError(
            f"model {pkg.name}: joined parts have sha256 {digest.hexdigest()}, expected {pkg.sha256}; "
            f"the installed packages are corrupted or the wrong version: "
            f"pip install --force-reinstall 'blazedit-lsp[models]'"
        )
    os.replace(out.name, target)
    stamp.write_text(pkg.sha256 + "\n")
    return target


def is_tiny(spec: str) -> bool:
    return spec == TINY or spec.startswith(TINY + ":")


def _tiny_seed(spec: str) -> int:
    seed = spec.partition(":")[2]
    if seed and not seed.isdigit():
        raise ModelError(f"bad model spec {spec!r}: use tiny-random or tiny-random:SEED")
    return int(seed or 0)


def _converted_packaged(pkg: PackagedModel) -> Path:
    converted = cache_dir() / "bf16" / f"{pkg.name}-{pkg.sha256[:16]}"
    if _cache_ok(converted):
        return converted
    return _convert(packaged_gguf(pkg), converted, pkg.sha256)


def _converted_gguf(path: Path) -> Path:
    digest = _sha256(path)
    converted = cache_dir() / "bf16" / f"{path.stem}-{digest[:16]}"
    if _cache_ok(converted):
        return converted
    return _convert(path, converted, digest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_ok(directory: Path) -> bool:
    marker = directory / "blazedit.json"
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format") == CACHE_FORMAT and all((directory / f).is_file() for f in meta.get("files", []))


def _convert(gguf: Path, converted: Path, digest: str) -> Path:
    """Dequantise a GGUF once (slow: tens of seconds) and save a bf16 safetensors copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    log.info("converting %s to a bf16 cache at %s (once; takes a minute on CPU)", gguf, converted)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # not its advice on running packed GGUF weights: saved dense below
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types for a bad file
        raise ModelError(f"cannot load GGUF {gguf}: {exc}") from exc
    finally:
        transformers_logging.set_verbosity(verbosity)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def save(directory: Path) -> None:
        model.save_pretrained(directory)
        tok.save_pretrained(directory)

    _write_cache(converted, digest, save)
    return converted


def _gguf_tokenizer(gguf: Path, digest: str):
    """The GGUF's tokenizer as transformers reads it (10 s), cached as a small directory."""
    from transformers import AutoTokenizer

    cached = cache_dir() / "tokenizer" / f"{gguf.stem}-{digest[:16]}"
    if not _cache_ok(cached):
        try:
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except Exception as exc:
            raise ModelError(f"cannot read the tokenizer of GGUF {gguf}: {exc}") from exc
        _write_cache(cached, digest, tok.save_pretrained)
    return AutoTokenizer.from_pretrained(cached)


def _write_cache(directory: Path, digest: str, save: Callable[[Path], None]) -> None:
    """Fill a temporary directory with ``save``, mark it, and rename it into place:
    an interrupted write never leaves a cache that looks valid."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=directory.name + ".tmp"))
    try:
        save(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / "blazedit.json").write_text(json.dumps({"format": CACHE_FORMAT, "source_sha256": digest, "files": files}))
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_dir(directory: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(directory)
    except Exception as exc:
        raise ModelError(f"cannot load model from {directory}: {exc}") from exc
    return model, tok


# ---------------------------------------------------------------- tiny random model

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer():
    """A byte-level tokenizer (256 byte tokens + ChatML specials): no download, no training."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _tiny_random(seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = byte_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
        tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # A larger init than the default makes greedy choices far from ties, so
        # batched and one-token forwards agree exactly in float32.
        config.initializer_range = 0.2
        model = Qwen2ForCausalLM(config)
    return model, tok
