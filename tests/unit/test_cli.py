"""`blazedit edit` on the tiny model: output modes, and one clear error line for bad input."""

import importlib.util
import json
import subprocess
import sys

import pytest

from engine import cli

from engine.cli import main
from engine.client import protocol
from engine.client.guard import SECOND_ATTEMPT, UNCHANGED

TINY = ["--model", "tiny-random", "--max-new-tokens", "40"]


def edit(capsys, *args):
    status = main(["edit", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("def f(x):\n    return x\n")
    return path


def test_json_reports_text_and_statistics(capsys, source):
    status, out, _ = edit(capsys, str(source), "-i", "add types", *TINY, "--json")
    data = json.loads(out)
    assert status == (0 if data["finish_reason"] == "stop" else 1)
    assert data["method"] == "blazedit" and data["tokens"] > 0
    for key in ("text", "target_forward_passes", "draft_forward_passes", "drafted", "accepted",
                "seconds", "chars_per_second"):
        assert key in data
    assert [r["qualified_name"] for r in data["removed_definitions"]] == ([] if "def f(" in data["text"] else ["f"])


@pytest.mark.parametrize("runtime", ["torch", pytest.param("llama.cpp", marks=pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"))])
def test_all_methods_give_the_same_text(capsys, source, runtime):
    texts = {}
    for method in ("regular", "pld", "assisted", "blazedit"):
        _, out, _ = edit(capsys, str(source), "-i", "add types", *TINY, "--runtime", runtime, "--method", method,
                         "--json")
        texts[method] = json.loads(out)["text"]
    assert len(set(texts.values())) == 1


def test_in_place_refuses_an_unfinished_generation(capsys, source):
    before = source.read_text()
    status, _, err = edit(capsys, str(source), "-i", "x", "--model", "tiny-random", "--max-new-tokens", "3", "--in-place")
    assert status == 1 and "nothing written" in err
    assert source.read_text() == before
    assert [p.name for p in source.parent.iterdir()] == ["a.py"]  # no temp file left behind


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    (b"\x00\x01binary", "looks binary"),
    (b"caf\xe9\n", "not UTF-8"),
])
def test_bad_files(capsys, tmp_path, content, message):
    path = tmp_path / "f.py"
    if content is not None:
        path.write_bytes(content)
    status, out, err = edit(capsys, str(path), "-i", "x", *TINY)
    assert status == 2 and out == ""
    assert err.startswith("blazedit: error:") and message in err and err.count("\n") == 1


def test_unknown_model_and_missing_draft(capsys, source):
    status, _, err = edit(capsys, str(source), "-i", "x", "--model", "nope")
    assert status == 2 and "unknown model spec 'nope'" in err
    status, _, err = edit(capsys, str(source), "-i", "x", *TINY, "--draft", "none", "--method", "assisted")
    assert status == 2 and "needs a draft model" in err


def test_unknown_method_is_refused_by_the_parser(capsys, source):
    with pytest.raises(SystemExit) as exc:
        main(["edit", str(source), "-i", "x", "--method", "magic"])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["-v", "edit", "a.py", "-i", "x"], ["edit", "a.py", "-i", "x", "-v"],
                                  ["engine", "status", "-v"], ["-v", "engine", "calibrate"]])
def test_verbose_goes_before_or_after_the_command(argv):
    assert cli.build_parser().parse_args(argv).verbose == 1
    assert cli.build_parser().parse_args([a for a in argv if a != "-v"]).verbose == 0


def test_file_too_large_for_the_context(capsys, tmp_path):
    path = tmp_path / "big.py"
    path.write_text("x = 1\n" * 6000)  # byte tokenizer: 36K tokens > 32K context
    status, _, err = edit(capsys, str(path), "-i", "x", "--model", "tiny-random")
    assert status == 2 and "exceeds the model's context" in err


def test_engine_commands_start_without_torch(tmp_path):
    """`blazedit engine status` answers in a blink: neither the parser nor the daemon
    client imports torch (about a second and a half on a 2-core CPU)."""
    code = ("import sys; from engine.cli import main; "
            f"status = main(['engine', 'status', '--engine', {str(tmp_path / 'none.sock')!r}]); "
            "assert status == 1, status; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------ edits that remove definitions

INVENTORY = "class Inventory:\n    def total(self):\n        return 0\n\n\ndef restock(inventory):\n    return 1\n"
DROPPED = "class Inventory:\n    def total(self) -> int:\n        return 0\n"  # type hints, and no restock()
WARNING = "blazedit: warning: the edit removes restock() (lines 6-7; the result stops before it)\n"


@pytest.fixture
def dropping(monkeypatch, tmp_path):
    """inventory.py, and an engine (a daemon, to the CLI) that answers with DROPPED."""
    monkeypatch.setattr(cli, "edit_via_daemon", lambda args, text, options, region: protocol.Done(
        job_id="scripted", text=DROPPED, finish_reason="stop", stats=protocol.Stats()))
    path = tmp_path / "inventory.py"
    path.write_text(INVENTORY)
    return path


@pytest.mark.parametrize("output", [["--in-place"], ["-o", "out.py"]])
def test_writing_refuses_an_edit_that_removes_a_definition(capsys, dropping, output):
    output = [str(dropping.parent / o) if o.endswith(".py") else o for o in output]
    status, out, err = edit(capsys, str(dropping), "-i", "add type hints", *output)
    assert status == 3 and out == ""
    assert err == ("blazedit: error: nothing written: the edit removes restock() (lines 6-7; the result stops "
                   "before it); rerun with --allow-removals to write it anyway\n")
    assert dropping.read_text() == INVENTORY
    assert [p.name for p in dropping.parent.iterdir()] == ["inventory.py"]  # no out.py, no temp file


def test_allow_removals_writes_and_warns(capsys, dropping):
    status, _, err = edit(capsys, str(dropping), "-i", "add type hints", "--in-place", "--allow-removals")
    assert status == 0 and err == WARNING and dropping.read_text() == DROPPED


@pytest.mark.parametrize("mode", [["--diff"], []])
def test_printing_warns_on_stderr(capsys, dropping, mode):
    status, out, err = edit(capsys, str(dropping), "-i", "add type hints", *mode)
    assert status == 0 and err == WARNING
    assert ("-def restock(inventory):" in out) if mode else out == DROPPED


@pytest.mark.parametrize("mode", [["--diff"], ["--in-place"]])
def test_an_unchanged_result_says_so(capsys, monkeypatch, tmp_path, mode):
    monkeypatch.setattr(cli, "edit_via_daemon", lambda args, text, options, region: protocol.Done(
        job_id="scripted", text=text, finish_reason="stop", stats=protocol.Stats()))
    path = tmp_path / "inventory.py"
    path.write_text(INVENTORY)
    status, out, err = edit(capsys, str(path), "-i", "make it better", *mode)
    assert status == 0 and out == "" and path.read_text() == INVENTORY
    assert err == f"blazedit: note: {UNCHANGED}\n"


def test_json_lists_the_removed_definitions(capsys, dropping):
    status, out, err = edit(capsys, str(dropping), "-i", "add type hints", "--json")
    assert status == 0 and err == ""
    assert json.loads(out)["removed_definitions"] == [
        {"name": "restock", "kind": "function", "qualified_name": "restock", "lines": [6, 7], "cut_off": True}]


def test_a_merged_partial_reply_is_said_and_listed(capsys, monkeypatch, tmp_path):
    merged = INVENTORY.replace("return 1", "return 2")
    monkeypatch.setattr(cli, "edit_via_daemon", lambda args, text, options, region: protocol.Done(
        job_id="scripted", text=merged, finish_reason="stop", stats=protocol.Stats(), attempt=2,
        partial=protocol.Partial(how="merged", items=["restock()"])))
    path = tmp_path / "inventory.py"
    path.write_text(INVENTORY)
    status, out, err = edit(capsys, str(path), "-i", "return 2 from restock")
    assert status == 0 and out == merged
    assert err == (f"blazedit: note: {SECOND_ATTEMPT}\nblazedit: note: the model replied with part of the file: "
                   "applied as a partial edit of restock()\n")
    status, out, _ = edit(capsys, str(path), "-i", "return 2 from restock", "--json")
    assert json.loads(out)["partial"] == {"how": "merged", "items": ["restock()"]}


def test_a_dropped_import_is_named(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "edit_via_daemon", lambda args, text, options, region: protocol.Done(
        job_id="scripted", text=text.replace("import os\n", ""), finish_reason="stop", stats=protocol.Stats()))
    path = tmp_path / "inventory.py"
    path.write_text("import os\n" + INVENTORY)
    status, out, err = edit(capsys, str(path), "-i", "tidy up", "--json")
    assert json.loads(out)["removed_definitions"] == [
        {"name": "import os", "kind": "import", "qualified_name": "import os", "lines": [1, 1], "cut_off": False}]
    status, out, err = edit(capsys, str(path), "-i", "tidy up")
    assert err == "blazedit: warning: the edit removes import os (line 1)\n"


def test_naming_the_definition_in_the_instruction_allows_its_removal(capsys, dropping):
    status, _, err = edit(capsys, str(dropping), "-i", "remove restock, add type hints", "--in-place")
    assert status == 0 and err == "" and dropping.read_text() == DROPPED


def test_lines_regenerates_only_those_lines(capsys, tmp_path):
    path = tmp_path / "four.py"
    path.write_bytes(b"first = 1\r\nsecond = 2\r\nthird = 3\r\nfourth = 4\r\n")
    status, out, _ = edit(capsys, str(path), "-i", "rename", *TINY, "--lines", "2-3", "--json")
    text = json.loads(out)["text"]
    assert text.startswith("first = 1\r\n") and text.endswith("fourth = 4\r\n")
    middle = text[len("first = 1\r\n"):-len("fourth = 4\r\n")]
    assert middle != "second = 2\r\nthird = 3\r\n"  # regenerated (a random model does not copy)
    assert text.count("first = 1") == text.count("fourth = 4") == 1


@pytest.mark.parametrize("lines, message", [("3-9", "lines 3-9 are not within the file's 2 lines"),
                                            ("0", "lines 0-0 are not within")])
def test_lines_outside_the_file_are_refused(capsys, source, lines, message):
    status, out, err = edit(capsys, str(source), "-i", "x", *TINY, "--lines", lines)
    assert status == 2 and out == "" and message in err


def test_lines_must_be_numbers(capsys, source):
    with pytest.raises(SystemExit):
        main(["edit", str(source), "-i", "x", "--lines", "a-b"])
    assert "expected A-B" in capsys.readouterr().err
