"""The engine. Its torch-free side (``engine.client``: what the language server may import)
and the commands' argument handling work on the base install; loading models needs the
``[engine]`` extra, which this package can tell is missing."""

from __future__ import annotations

import importlib.util
from importlib import metadata

INSTALL_HINT = "pip install 'blazedit-lsp[engine]' (in a checkout: pip install '.[engine]')"


def installed() -> bool:
    """Whether this environment can load models (the `[engine]` extra: torch and transformers)."""
    return importlib.util.find_spec("torch") is not None


def version() -> str:
    """This package's version, as the daemon and the language server report it."""
    try:
        return metadata.version("blazedit-lsp")
    except metadata.PackageNotFoundError:
        return "0+unknown"
