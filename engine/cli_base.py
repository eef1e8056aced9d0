"""What `blazedit`'s commands share (engine/cli.py: edit and bench; engine/daemon_cli.py:
the daemon): the error that ends a command, and the model options. No torch here."""

from __future__ import annotations

import argparse
import importlib.util

import engine
from engine.catalogue import DEFAULT_TARGET


class CliError(Exception):
    """One line for the user; exit status 2 (1 for a generation that did not finish,
    3 for an edit that removes definitions)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def require_engine(what: str) -> None:
    """Raise CliError saying how to install the engine when torch is missing
    (the base install runs the language server and talks to daemons only)."""
    if not engine.installed():
        raise CliError(f"{what} needs the engine, which is not installed here (no torch): {engine.INSTALL_HINT}")


def require_openai() -> None:
    """Raise CliError saying how to install the OpenAI-compatible API's server when it is missing."""
    if not all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn")):
        raise CliError("--openai needs Starlette and uvicorn, which are not installed here: "
                       "pip install 'blazedit-lsp[openai]'")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_TARGET, help=f"target model spec (default {DEFAULT_TARGET})")
    parser.add_argument("--draft", default="default", help="draft model spec, 'none', or 'default' (the usual partner)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "llama.cpp"),
                        help="auto (default): the runtime this machine's calibration predicts fastest "
                             "(blazedit engine calibrate)")
    parser.add_argument("--draft-runtime", default=None, choices=("auto", "torch", "llama.cpp"),
                        help="the draft's runtime (default: as --runtime)")
    parser.add_argument("--device", default=None, help="torch runtime: cuda, mps, cpu (default: the fastest present)")
    parser.add_argument("--dtype", default=None, help="torch runtime: bf16, fp16, fp32 (default: bf16 where fast)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: every core for llama.cpp, torch's choice for torch)")
    parser.add_argument("--exact", action="store_true",
                        help="the fastest target whose verification passes score bit for bit as one-token "
                             "steps (probed on this machine the first time, then kept), never moved to a second "
                             "target: every method's output is plain greedy decoding's, bit for bit; auto may "
                             "otherwise pick kernels that round differently and flip a near-tie")


def draft_spec(args: argparse.Namespace) -> str | None:
    return None if args.draft == "none" else args.draft
