"""blazedit_lsp.config: camelCase keys, per-key validation with defaults kept."""

from blazedit_lsp.config import Config, parse


def test_defaults_and_camel_case():
    config, problems = parse({"maxNgram": 12, "defaultInstruction": "tidy up", "presets": ["a"]})
    assert problems == []
    assert (config.max_ngram, config.default_instruction, config.presets) == (12, "tidy up", ["a"])
    assert config.decoding_options().max_ngram == 12


def test_section_wrapper_accepted():
    config, problems = parse({"blazedit": {"engine": "tcp://127.0.0.1:7000", "engineToken": "t"}})
    assert problems == [] and config.engine == "tcp://127.0.0.1:7000" and config.engine_token == "t"


def test_bad_keys_are_named_and_keep_defaults():
    config, problems = parse(
        {"maxNgram": 0, "method": "fastest", "progressIntervalMs": "soon", "presets": [""], "typo": 1, "model": "m"}
    )
    assert config.model == "m"  # the good key still applies
    assert (config.max_ngram, config.method, config.progress_interval_ms, config.presets) == (
        10,
        "blazedit",
        250,
        Config().presets,
    )
    text = "\n".join(problems)
    for key in ("maxNgram", "method", "progressIntervalMs", "presets", "typo"):
        assert f"'{key}'" in text
    assert len(problems) == 5


def test_not_an_object():
    config, problems = parse(["engine"])
    assert config == Config() and "must be an object" in problems[0]


def test_changes_apply_over_base():
    base, _ = parse({"model": "m", "maxNumRun": 2})
    config, problems = parse({"maxNumRun": -1, "draft": "d"}, base)
    assert (config.model, config.draft, config.max_num_run) == ("m", "d", 2)
    assert "'maxNumRun'" in problems[0] and "using 2" in problems[0]


def test_none_settings_keep_base():
    base, _ = parse({"model": "m"})
    assert parse(None, base) == (base, [])


def test_guard_removals_is_one_of_three():
    assert Config().guard_removals == "ask"
    config, problems = parse({"guardRemovals": "keep"})
    assert problems == [] and config.guard_removals == "keep"
    config, problems = parse({"guardRemovals": "never"}, config)
    assert config.guard_removals == "keep"  # a bad value keeps the previous one
    assert problems == ["invalid setting 'guardRemovals': Invalid enum value 'never'; using \"keep\""]
