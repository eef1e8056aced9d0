"""Put on PYTHONPATH, makes this interpreter one without the engine's dependencies:
importing them fails, and importlib.util.find_spec finds none of them, as after a
base install (`pip install .`, no `[engine]` extra)."""

import sys

for name in ("torch", "transformers", "llama_cpp", "gguf", "accelerate", "matplotlib"):
    sys.modules[name] = None
