import sys
import types

import pytest
import torch

from engine import models
from engine.catalogue import PackagedModel


def test_unknown_spec_is_a_clear_error():
    with pytest.raises(models.ModelError, match="unknown model spec 'gpt-9'"):
        models.load("gpt-9")
    with pytest.raises(models.ModelError, match="tiny-random:SEED"):
        models.load("tiny-random:x")


def _fake_package(monkeypatch, tmp_path, prefix, contents):
    for n, data in enumerate(contents, 1):
        part = tmp_path / f"part{n:02d}.bin"
        part.write_bytes(data)
        module = types.ModuleType(f"{prefix}{n}")
        module.get_part_path = lambda part=part: str(part)
        monkeypatch.setitem(sys.modules, f"{prefix}{n}", module)


def test_parts_are_joined_in_order_and_hash_checked(monkeypatch, tmp_path):
    import hashlib

    _fake_package(monkeypatch, tmp_path, "fakemodel_part", [b"GGUF", b"body"])
    good = PackagedModel("fake", "fakemodel_part", "fakemodel-part", "1.0", 2,
                                hashlib.sha256(b"GGUFbody").hexdigest(), "")
    path = models.packaged_gguf(good)
    assert path.read_bytes() == b"GGUFbody"
    assert models.packaged_gguf(good) == path  # verified once, then reused


def test_corrupted_package_is_refused_and_leaves_nothing(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path, "badmodel_part", [b"GGUF", b"evil"])
    bad = PackagedModel("bad", "badmodel_part", "badmodel-part", "1.0", 2, "0" * 64, "")
    with pytest.raises(models.ModelError, match="sha256"):
        models.packaged_gguf(bad)
    assert not list((models.cache_dir() / "gguf").glob("bad*"))


def test_missing_part_says_how_to_install():
    missing = PackagedModel("gone", "no_such_module_part", "no-such-part", "1.0", 3, "0" * 64, "")
    with pytest.raises(models.ModelError, match=r"no-such-part1==1.0 is missing\): pip install 'blazedit-lsp\[models\]'"):
        models.packaged_gguf(missing)


def test_converted_cache_without_marker_is_not_trusted(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"half")
    assert not models._cache_ok(tmp_path)


def test_tiny_random_is_deterministic():
    a, b = models.load("tiny-random"), models.load("tiny-random")
    assert all((p == q).all() for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert a.dtype == "float32" and next(a.model.parameters()).dtype == torch.float32


def test_load_refuses_an_unknown_runtime():
    with pytest.raises(models.ModelError, match="unknown runtime 'onnx'"):
        models.load("tiny-random", runtime="onnx")


def test_llama_cpp_runtime_errors_say_what_to_do(monkeypatch):
    with pytest.raises(models.ModelError, match="--runtime torch for cuda"):
        models.load("tiny-random", runtime="llama.cpp", device="cuda")
    with pytest.raises(models.ModelError, match="--dtype is for the torch runtime"):
        models.load("tiny-random", runtime="llama.cpp", dtype="bf16")
    monkeypatch.setitem(sys.modules, "engine.runtimes.llama_runtime", None)  # as if not installed
    with pytest.raises(models.ModelError, match=r"pip install 'blazedit-lsp\[llama\]'"):
        models.load("tiny-random", runtime="llama.cpp")
