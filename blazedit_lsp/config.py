"""Server settings from initializationOptions and workspace/didChangeConfiguration.

Why per-key validation: one mistyped setting must not throw away the others
or stop the server. Each key is checked on its own; a bad one is reported
(naming the key) and keeps its default.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec

from engine.client import protocol

log = logging.getLogger(__name__)

SECTION = "blazedit"
"""Settings may come wrapped in this section (VS Code style) or bare."""

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_DECODING = protocol.DecodingOptions()  # the one source of the method knobs' defaults


class Config(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """All keys optional; camelCase on the wire (docs/lsp.md lists them)."""

    engine: NonEmpty = "auto"
    """"auto": use or spawn the daemon; "embedded": engine in a child process
    of the server; a daemon address (socket path or tcp://host:port); or an
    OpenAI-compatible server, "openai:http://host:port/v1" (key from $BLAZEDIT_API_KEY
    or $OPENAI_API_KEY, never a setting)."""
    engine_token: str | None = None
    """Token for a TCP daemon."""
    model: str | None = None
    """Target model spec as in `blazedit edit` (None: the engine's default)."""
    draft: str | None = None
    """Draft model spec (None: the engine's default)."""
    engine_model: str | None = None
    """The model an "openai:" server serves under (None: the first it lists)."""
    method: protocol.Method = "blazedit"
    max_new_tokens: protocol.Positive | None = _DECODING.max_new_tokens
    max_ngram: protocol.Positive = _DECODING.max_ngram
    num_tokens: protocol.Positive = _DECODING.num_tokens
    assisted_start_tokens: protocol.Positive = _DECODING.assisted_start_tokens
    micro_draft_tokens: protocol.Positive = _DECODING.micro_draft_tokens
    max_num_run: protocol.Positive = _DECODING.max_num_run
    max_draft_tokens: protocol.Positive = _DECODING.max_draft_tokens
    presets: list[NonEmpty] = msgspec.field(default_factory=lambda: ["add docstrings", "add type hints", "fix bugs"])
    """One code action per preset instruction."""
    default_instruction: str = ""
    """Used when an edit has no instruction from its arguments or a comment."""
    instruction_marker: NonEmpty = "AI:"
    """Comment lines starting with this marker give the instruction."""
    max_file_bytes: protocol.Positive = 256 * 1024
    progress_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 250
    command_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 100_000
    """How long blazedit.editFile may hold its request open before answering
    and applying later through workspace/applyEdit (Zed gives up at 120 s)."""
    apply_timeout_ms: protocol.Positive = 30_000
    """How long to wait for the editor's answer to one workspace/applyEdit: an editor
    that never answers must not hold the job (and the document's next edit) forever."""
    apply_while_streaming: bool = True
    """Apply each hunk as soon as the output has moved past it and copies the file
    again (edits.settled); False: apply the whole edit at the end."""
    guard_removals: Literal["ask", "keep", "allow"] = "ask"
    """An edit that removes a definition the instruction does not name: ask
    the user, keep the definition, or apply the edit as it is."""
    retry_unchanged: bool = True
    """A whole file the model returns unchanged is asked for once more, the model
    saying first what it will change (engine/client/prompts.py's PLAN_FIRST)."""
    warm: Literal["onOpen", "off"] = "onOpen"
    """"onOpen": ask the engine to prefill a document's prompt when it is opened
    and after the user pauses typing (blazedit_lsp/warming.py), so its next edit
    starts at once; under "auto" that starts the daemon and loads the model.
    "off": the engine is first reached by an edit."""
    warm_delay_ms: Annotated[int, msgspec.Meta(ge=0)] = 1500
    """How long after the last change of a document it is warmed again."""
    review: Literal["afterApply", "preview", "off"] = "afterApply"
    """"afterApply": the hunks of a document's last AI edit stay pending after they land, each
    shown (diagnostic, code lens, blazedit/hunks) until kept or rejected (blazedit_lsp/reviewing.py);
    "preview": the edit goes out as one workspace/applyEdit with a change annotation per hunk
    that needs confirmation, so the editor's preview lets the user pick hunks before any lands
    (where the client declares changeAnnotationSupport; elsewhere "afterApply", said once);
    "off": nothing is tracked, and blazedit.undo reverts the whole last edit."""

    def decoding_options(self) -> protocol.DecodingOptions:
        """The method knobs, which share their names with DecodingOptions' fields."""
        return protocol.DecodingOptions(**{name: getattr(self, name) for name in protocol.DecodingOptions.__struct_fields__})

    def engine_key(self) -> tuple[str, str | None, str | None, str | None, str | None]:
        """Settings that need a new engine connection when they change."""
        return (self.engine, self.engine_token, self.model, self.draft, self.engine_model)


_FIELDS = {f.encode_name: f for f in msgspec.structs.fields(Config)}


def parse(settings: Any, base: Config | None = None) -> tuple[Config, list[str]]:
    """Validate ``settings`` over ``base`` (defaults when None).

    Returns the new config and one problem message per rejected key; rejected
    keys keep their value from ``base``. Never raises.
    """
    config = base or Config()
    if settings is None:
        return config, []
    if isinstance(settings, dict) and isinstance(settings.get(SECTION), dict):
        settings = settings[SECTION]
    if not isinstance(settings, dict):
        return config, [f"settings must be an object, got {type(settings).__name__}; using defaults"]
    values, problems = {}, []
    for key, value in settings.items():
        field = _FIELDS.get(key)
        if field is None:
            problems.append(f"unknown setting {key!r} ignored")
            continue
        try:
            one = msgspec.convert({key: value}, Config)
        except msgspec.ValidationError as e:
            problems.append(f"invalid setting {key!r}: {_reason(e)}; using {_show(getattr(config, field.name))}")
            continue
        values[field.name] = getattr(one, field.name)
    if values:
        config = msgspec.structs.replace(config, **values)
    return config, problems


def _reason(error: msgspec.ValidationError) -> str:
    text = str(error)
    return text.split(" - at ", 1)[0]


def _show(value: Any) -> str:
    return "the default" if value is None else msgspec.json.encode(value).decode()

