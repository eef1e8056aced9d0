import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tests must not fight over the two cores

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path_factory, monkeypatch):
    """Tests write model files and daemon state to a temporary cache, except the
    real-model tests, which reuse the user's converted models (minutes to rebuild)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("BLAZEDIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
