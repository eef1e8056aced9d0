"""OpenAI-compatible servers for the remote engine's tests, on loopback with an API key:
blazedit's own daemon (`blazedit engine serve --openai`, which uses `prediction`), and
llama-cpp-python's (`python -m llama_cpp.server`, which ignores it), serving two tiny random
GGUFs: ``tiny`` (tiny-random:2, which ends its replies within a few hundred tokens)
and ``endless`` (the same with its special tokens' output rows zeroed, so it never
ends a reply on its own: long enough to cancel or break mid-stream, always).

``reference()`` is the server's own greedy output for a prompt, read with the SDK
alone. (llama-cpp-python streams a random byte model's invalid UTF-8 differently
from its non-streamed answer, so the reference is streamed too.)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from daemon_harness import DaemonProcess, free_port

from engine.client import prompts
from engine.client.remote import EXTRA_SAMPLING, SAMPLING

KEY = f"sk-blazedit-test-{secrets.token_hex(8)}"
GGML_TYPE_F32 = 0  # a float32 KV cache: greedy choices do not depend on how the prompt was batched


def write_models(directory: Path) -> dict[str, Path]:
    from engine.tiny_gguf import write_tiny_gguf

    paths = {}
    for alias, endless in (("tiny", False), ("endless", True)):
        paths[alias] = directory / f"{alias}.gguf"
        write_tiny_gguf(*tiny_model(endless), paths[alias])
    return paths


def write_endless_directory(directory: Path) -> Path:
    """The endless model as a Hugging Face directory, for blazedit's daemon (whose GGUF
    loading needs a real tokenizer's vocabulary; tiny-random's byte-level one has none)."""
    model, tok = tiny_model(endless=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def tiny_model(endless: bool):
    """tiny-random:2, or the same with its special tokens' output rows zeroed (logit 0:
    never the largest of 259 random ones), so it never ends a reply."""
    import torch

    from engine import models

    model, tok = models._tiny_random(2)
    if endless:
        with torch.no_grad():
            model.lm_head.weight[tok.all_special_ids] = 0.0
    return model, tok


class LlamaServer:
    """`python -m llama_cpp.server` in a child process, waited for until /v1/models answers."""

    def __init__(self, directory: Path, models: dict[str, Path], api_key: str | None = KEY):
        self.port, self.api_key, self.dir = free_port(), api_key, directory
        config = {
            "host": "127.0.0.1", "port": self.port, "api_key": api_key, "interrupt_requests": False,
            "models": [{"model": str(path), "model_alias": alias, "chat_format": "chatml", "n_ctx": 32768,
                        "n_threads": 1, "n_threads_batch": 1, "type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32,
                        "verbose": False} for alias, path in models.items()],
        }
        (directory / "server.json").write_text(json.dumps(config))
        self.log = directory / f"server-{self.port}.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(directory / "server.json")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env={**os.environ, "OMP_NUM_THREADS": "1"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = 120.0) -> "LlamaServer":
        """Until /v1/models answers (the server binds once its first model loaded)."""
        served(self.url, self.process, self.output, timeout)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


class BlazeditServer:
    """`blazedit engine serve --openai PORT` in a child process (its socket in a directory
    of its own), with KEY as its token: the engine of `engine: "openai:URL"`."""

    def __init__(self, model: str):
        self.port = free_port()
        self.daemon = DaemonProcess("--model", model, "--openai", str(self.port), env={"BLAZEDIT_TOKEN": KEY})
        self.model = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = 120.0) -> "BlazeditServer":
        """Until /v1/models answers; ``model`` is then the name it serves."""
        self.model = served(self.url, self.daemon.process, self.daemon.output, timeout)[0]
        return self

    def log(self) -> str:
        return self.daemon.log.read_text(errors="replace")

    def kill(self) -> None:
        self.daemon.cleanup()


def served(url: str, process: subprocess.Popen, output, timeout: float) -> list[str]:
    """Bounded polling until GET /models answers; the models it lists."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
    while True:
        assert process.poll() is None, f"server exited with {process.returncode}: {output()}"
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return [model["id"] for model in json.load(answer)["data"]]
        except (OSError, urllib.error.URLError):
            assert time.monotonic() < deadline, f"server not ready in {timeout}s: {output()}"
            time.sleep(0.1)


def reference(url: str, model: str, text: str, instruction: str, path: str, language: str | None,
              max_tokens: int) -> tuple[str, str]:
    """(the file, finish reason) the server itself answers for the edit, read with the SDK alone."""
    import openai

    prompt = prompts.build(text, instruction, path, language)
    with openai.OpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk:
        stream = sdk.chat.completions.create(model=model, messages=prompt.messages, stream=True, max_tokens=max_tokens,
                                             extra_body=EXTRA_SAMPLING, **SAMPLING)
        reply, finish = "", None
        for chunk in stream:
            if chunk.choices:
                reply += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
    reader = prompts.ReplyReader(prompt)
    reader.feed(reply)
    return reader.result(complete=finish == "stop"), finish
