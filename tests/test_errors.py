"""Bad input never crashes (issue 6): every mistake is refused with a message naming the
file, line, column and key, what was expected and what was found, and exit status 2.

The corpus under tests/bad/ holds one broken scenario per mistake; each file's first lines
say what the message must contain (`# expect: ...`) and where it must point (`# at:
line:column`).  Cases that cannot be written as a scenario file (a missing file, a
directory, bytes that are not UTF-8) are tests of their own below.
"""
from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from bptrace import scenario as scenario_module
from bptrace.cli import main
from bptrace.errors import ScenarioError, suggest
from bptrace.scenario import load, loads
from bptrace.source import format_path, parse_path, parse_text
from conftest import ROOT

CORPUS = sorted((Path(__file__).parent / "bad").glob("*.yaml"))
COMMANDS_THAT_LOAD = [("run", "--format", "json"), ("run",), ("check",), ("explain",)]


def _header(path: Path):
    text = path.read_text(encoding="utf-8")
    expect = re.search(r"^# expect: (.+)$", text, re.M)
    at = re.search(r"^# at: (\d+(?::\d+)?)$", text, re.M)
    assert expect, f"{path.name} has no `# expect:` line"
    return expect.group(1), at.group(1) if at else None


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"


def test_the_corpus_covers_the_issue():
    assert len(CORPUS) >= 100


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_broken_scenario_is_refused_with_a_located_message(path, tmp_path):
    expect, at = _header(path)
    out = tmp_path / "trace.json"
    result = _invoke("run", "--format", "json", "-o", out, path)
    location = f"{path.name}:{at}:" if at else f"{path.name}:"
    _refused(result, expect, location)
    assert not out.exists() and not list(tmp_path.iterdir()), "a failed run left a file behind"
    if at:
        line = int(at.split(":")[0])
        # the snippet shows the line the location names, with a caret under the column
        assert re.search(rf"^\s+{line} \| ", result.output, re.M), result.output
        if ":" in at:
            column = int(at.split(":")[1])
            caret = [row for row in result.output.splitlines() if row.strip().endswith("^")]
            assert caret and caret[0].index("^") - caret[0].index("|") - 2 == column - 1, result.output


def _refused_on_loading(path) -> bool:
    """The file's mistake is found while it is read (not only when it runs: a bce output out
    of range, a log of a negative number), so every command that reads it refuses it."""
    try:
        load(path)
    except ScenarioError:
        return True
    return False


@pytest.mark.parametrize("path", [p for p in CORPUS if _refused_on_loading(p)][::9], ids=lambda p: p.stem)
def test_every_command_that_loads_a_scenario_refuses_it_the_same_way(path):
    expect, _ = _header(path)
    commands = [c for c in COMMANDS_THAT_LOAD if c[0] in main.commands]
    assert ("run", "--format", "json") in commands
    for command in commands:
        extra = ["input"] if command[0] == "explain" else []
        _refused(_invoke(*command, path, *extra), expect, path.name)


def test_a_message_reads_as_a_whole():
    path = Path(__file__).parent / "bad" / "dense_width.yaml"
    result = _invoke("run", path)
    assert result.exit_code == 2
    assert result.output.replace(str(path), path.name) == (
        "error: dense_width.yaml:7:28: layers[2].weights: dense h expects 4 inputs; flatten f makes 9; "
        "the shapes: input 4×4 → c1 (conv) 3×3 → f (flatten) 9 → h (dense) "
        "(weights are written [out][in]: each row needs 9 numbers)\n"
        "     7 |   - {type: dense, name: h, weights: [[1, 1, 1, 1], [0, 0, 0, 0]]}\n"
        "       |                            ^\n")


def test_the_library_raises_one_typed_error_with_its_parts():
    with pytest.raises(ScenarioError) as caught:
        load(Path(__file__).parent / "bad" / "unknown_layer_key.yaml")
    error = caught.value
    assert (error.line, error.column, error.key) == (5, 18, "layers[0].kernal")
    assert error.hint.startswith("did you mean 'kernel'?")


# --- files that are not scenarios at all --------------------------------------------------

def test_a_missing_file(tmp_path):
    (tmp_path / "problem.yaml").write_text("input: [1]\n")
    _refused(_invoke("run", tmp_path / "problme.yaml"), "problme.yaml: no such file",
             "did you mean 'problem.yaml'?")


def test_a_directory(tmp_path):
    _refused(_invoke("run", tmp_path), "this is a directory, not a scenario file")


def test_a_binary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)))
    _refused(_invoke("run", path), "model.pt: this is a binary file, not a YAML scenario")


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("input: [1, 2]\nname: Übung\n".encode("latin-1"))
    _refused(_invoke("run", path), "latin1.yaml:2:7: the file is not UTF-8 text (byte 0xdc)", "save it as UTF-8")


def test_a_utf16_file(tmp_path):
    path = tmp_path / "notepad.yaml"
    path.write_bytes("input: [1, 2]\n".encode("utf-16"))
    _refused(_invoke("run", path), "the file is UTF-16 text; bptrace reads UTF-8")


def test_a_control_character(tmp_path):
    path = tmp_path / "bell.yaml"
    path.write_text("input: [1, 2]\nname: a\x07b\n")
    _refused(_invoke("run", path), "bell.yaml:2:8: the control character 0x07 is not allowed")


def test_an_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    _refused(_invoke("run", path), "empty.yaml: the file is empty", "bptrace new")


# --- YAML that would be dangerous or slow --------------------------------------------------

def test_an_unsafe_tag_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"input: !!python/object/apply:os.system ['touch {marker}']\nlayers: [{{type: relu}}]\n")
    _refused(_invoke("run", path), "evil.yaml:1:8: input: the tag !!python/object/apply:os.system is not allowed")
    assert not marker.exists()


def test_an_alias_bomb_is_refused_at_once():
    # 9^30 copies of "lol" once expanded: refused at the first alias, before anything grows
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 31):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*{'a' if level == 1 else f'l{level - 1}'}"] * 9) + "]")
    text = "\n".join(lines + ["input: *l30", "layers: [{type: relu}]"])
    started = time.perf_counter()
    with pytest.raises(ScenarioError, match="aliases") as caught:
        loads(text, "bomb.yaml")
    assert time.perf_counter() - started < 0.5
    assert (caught.value.line, caught.value.column) == (2, 10)   # l1: &l1 [*a


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("input: " + "[" * 5000 + "1" + "]" * 5000 + "\nlayers: [{type: relu}]\n")
    _refused(_invoke("run", path), "deep.yaml:1:39: nested more than 32 levels deep")


def test_an_integer_beyond_floating_point_is_not_finite(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("input: [1, 2]\nlayers: [{type: relu}]\nupstream: {delta: [1, 1]}\nlearning_rate: 1" + "0" * 400 + "\n")
    _refused(_invoke("run", path), "huge.yaml:4:16: learning_rate: '1000", "is not a finite number")


def test_numbers_with_an_exponent_and_no_point_are_numbers():
    # YAML 1.1 (PyYAML) reads 1e-3 as text; a student means a number, as YAML 1.2 and JSON do
    sc = loads("input: [1e-3, -2E+2]\nlayers: [{type: relu}]\nupstream: {delta: [1, 1]}\n")
    assert sc.input.ravel().tolist() == [0.001, -200.0]


def test_numbers_are_read_as_yaml_1_2_and_json_read_them():
    # YAML 1.1 (PyYAML) reads these as text, and the message said "write numbers without quotes"
    sc = loads("input: [1.5e3, 1.0E5, -.5, +.5, 5., 1_000, 0.5]\nlayers: [{type: relu}]\n"
               "upstream: {delta: [1, 1, 1, 1, 1, 1, 1]}\n")
    assert sc.input.ravel().tolist() == [1500.0, 100000.0, -0.5, 0.5, 5.0, 1000.0, 0.5]
    assert sc.document.raw[("input", 0)] == "1.5e3"      # the text as written, for `check`'s decimals


@pytest.mark.parametrize("written", ["010", "0145", "-07", "1:30", "1:30.5"])
def test_numbers_yaml_versions_disagree_on_are_refused_under_either_version(written):
    # YAML 1.1 reads 010 as 8, 0145 as 101 and 1:30 as 90, even after `%YAML 1.2`
    for head in ("", "%YAML 1.2\n---\n"):
        with pytest.raises(ScenarioError, match="YAML 1.1") as caught:
            loads(f"{head}input: [1, 2]\nlayers: [{{type: relu}}]\nupstream: {{delta: [1, 1]}}\n"
                  f"learning_rate: {written}\n")
        assert caught.value.key == "learning_rate" and caught.value.line == head.count("\n") + 4


def test_a_json_surrogate_pair_is_one_character(tmp_path):
    # json.dumps writes 𝑥 as "\ud835\udc65"; the YAML reader decodes the halves one by one
    import json

    path = tmp_path / "math.json"
    path.write_text(json.dumps({"name": "the 𝑥 problem", "description": "𝑥 → 𝑦", "input": [1, 2],
                                "layers": [{"type": "relu"}], "upstream": {"delta": [1, 1]},
                                "expected": {"input.delta": [1, 1]}}))
    assert "\\ud835" in path.read_text()
    result = _invoke("run", path)
    assert result.exit_code == 0, result.output
    assert "the 𝑥 problem" in result.output and "Traceback" not in result.output
    result = _invoke("check", path)
    assert result.exit_code == 0, result.output
    assert loads(path.read_text()).name == "the 𝑥 problem"


def test_only_regular_files_are_read(tmp_path):
    import os

    # /dev/zero never ends, and a named pipe without a writer never starts
    _refused(_invoke("run", "/dev/zero"), "/dev/zero: this is a device, not a regular file")
    pipe = tmp_path / "sheet.yaml"
    os.mkfifo(pipe)
    _refused(_invoke("run", pipe), "sheet.yaml: this is a named pipe, not a regular file")
    scenario = ROOT / "scenarios" / "seed001.yaml"
    _refused(_invoke("check", scenario, "--expected", tmp_path), "sheet.yaml: this is a named pipe")


def test_a_file_too_large_to_be_a_scenario_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from bptrace import source

    path = tmp_path / "huge.yaml"
    path.write_text("input: [1, 2]\nlayers: [{type: relu}]\nupstream: {delta: [1, 1]}\n" + "#" * 1000 + "\n")
    monkeypatch.setattr(source, "MAX_FILE_BYTES", 1000)
    _refused(_invoke("run", path), "huge.yaml: the file is larger than 1,000 bytes")
    assert source.read_regular_file(path, limit=2000).startswith(b"input:")


def test_a_dangling_link_names_what_it_points_to(tmp_path):
    (tmp_path / "problem.yaml").symlink_to(tmp_path / "moved" / "problem.yaml")
    result = _invoke("run", tmp_path / "problem.yaml")
    _refused(result, "problem.yaml: this is a symbolic link to", "moved/problem.yaml', which does not exist")
    assert "did you mean 'problem.yaml'" not in result.output


def test_a_vector_before_activations_alone_is_read_as_features():
    # read as a one-pixel-high map, a softmax would be over one channel: [1, 1, 1]
    sc = loads("input: [1, 2, 3]\nlayers: [{type: softmax}]\nupstream: {delta: [1, 0, 0]}\n")
    assert sc.input.shape == (1, 3)


def test_a_long_line_is_cut_around_the_mistake(tmp_path):
    path = tmp_path / "wide.yaml"
    row = ", ".join(["0.5"] * 400)
    path.write_text(f"input: [{row}, oops, {row}]\nlayers: [{{type: relu}}]\n")
    result = _invoke("run", path)
    _refused(result, "input[400]: expected a number in the input, found the text 'oops'")
    source, caret = result.output.splitlines()[1:3]
    assert len(source) < 130
    assert source[caret.index("^"):].startswith("oops")


def test_windows_line_endings_and_a_byte_order_mark_are_fine(tmp_path):
    path = tmp_path / "windows.yaml"
    path.write_bytes(b"\xef\xbb\xbfinput: [1, 2]\r\nlayers: [{type: relu}]\r\nupstream: {delta: [1, 1]}\r\n")
    assert _invoke("run", "--format", "json", path).exit_code == 0
    path.write_bytes(b"input: [1, 2]\r\nlayers: [{type: rleu}]\r\n")
    result = _invoke("run", path)
    _refused(result, "windows.yaml:2:17: layers[0].type: unknown layer type 'rleu' (did you mean 'relu'?")
    assert "\r" not in result.output


# --- the size limit -------------------------------------------------------------------------

def test_a_network_too_large_for_scalar_loops_is_refused_at_once(tmp_path):
    path = tmp_path / "imagenet.yaml"
    path.write_text("input: {random: uniform, shape: [3, 224, 224], seed: 0}\ninit: {seed: 0}\n"
                    "layers:\n  - {type: conv, out_channels: 64, size: 7, stride: 2, padding: 3}\n"
                    "  - {type: relu}\n  - {type: conv, out_channels: 64, size: 3, padding: 1}\n"
                    "upstream: {delta: 1}\n")
    started = time.perf_counter()
    result = _invoke("run", path)
    assert time.perf_counter() - started < 3
    _refused(result, "imagenet.yaml:4:5: layers[0]: this network needs at least 354,041,856 scalar operations",
             "more than the 30,000,000 bptrace runs as explicit loops", "pass --no-size-limit")


def test_no_size_limit_lifts_the_limit(monkeypatch):
    path = ROOT / "scenarios" / "seed001.yaml"
    monkeypatch.setattr(scenario_module, "DEFAULT_WORK_LIMIT", 100)
    _refused(_invoke("run", path), "more than the 100 bptrace runs", "--no-size-limit")
    assert _invoke("run", "--format", "json", "--no-size-limit", path).exit_code == 0


def test_a_tensor_too_large_to_hold_is_refused_even_without_the_limit(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("input: {random: uniform, shape: [100000, 100000]}\nlayers: [{type: relu}]\n")
    _refused(_invoke("run", "--no-size-limit", path), "input.shape: an input of 10,000,000,000 numbers")
    path.write_text("input: [1, 2]\ninit: {seed: 0}\nlayers: [{type: dense, out: 100000000}]\n")
    _refused(_invoke("run", "--no-size-limit", path), "huge.yaml:3:10: layers[0]: the weights would hold 200,000,000")


# --- errors found while running -------------------------------------------------------------

def test_a_failed_run_leaves_an_existing_output_file_alone(tmp_path):
    out = tmp_path / "trace.json"
    out.write_text("previous trace")
    for broken in ("bce_output_range.yaml", "nonfinite_computed.yaml", "dense_width.yaml"):
        result = _invoke("run", "--format", "json", "-o", out, Path(__file__).parent / "bad" / broken)
        assert result.exit_code == 2
        assert out.read_text() == "previous trace"
        assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]


def test_an_error_found_while_running_is_located_by_every_command(tmp_path):
    path = tmp_path / "bce.yaml"
    path.write_text((Path(__file__).parent / "bad" / "bce_output_range.yaml").read_text() + "expected:\n  loss: 1\n")
    commands = [("run",), ("check",), ("explain", "loss")]
    for command in [c for c in commands if c[0] in main.commands]:
        result = _invoke(command[0], path, *command[1:])
        _refused(result, "bce.yaml:6:14: loss.type: bce needs outputs strictly between 0 and 1, but the last "
                         "layer's output element [1] (counting from 0) is -1 (put a sigmoid layer last)")
        assert result.output.count("bce.yaml") == 1


def test_an_overflow_while_running_names_the_value_and_the_layer(tmp_path):
    path = tmp_path / "overflow.yaml"
    path.write_text("input: [[1e300, 1e300], [1, 1]]\nlayers:\n  - {type: relu, name: r}\n"
                    "  - {type: flatten}\n  - {type: dense, name: h, weights: [[1e10, 1e10, 0, 0]]}\n"
                    "loss: {type: mse, target: 0}\nlearning_rate: 0.1\n")
    _refused(_invoke("run", path), "overflow.yaml:5:5: layers[2]: h.out is inf")


def test_an_overflow_in_numpy_arithmetic_shows_no_python_warning(tmp_path):
    """The loss squares numpy numbers: 1e300² overflows there.  bptrace names the value
    itself; numpy's RuntimeWarning (a source path and line of bptrace) must not reach the
    terminal beside that message (found by the structural fuzz)."""
    path = tmp_path / "overflow.yaml"
    path.write_text("input: [[1, 2], [3, 4]]\nlayers:\n  - {type: conv, name: c, kernel: [[1e300, 0], [0, 0]]}\n"
                    "loss: {type: sse, target: 2}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _refused(_invoke("run", path), "overflow.yaml:4:1: loss: loss is inf")


# --- the pieces -----------------------------------------------------------------------------

def test_key_paths_are_written_and_read_back():
    for path in [("layers", 2, "kernel"), ("loss", "type"), ("input",), ("upstream", "delta", 0, 1)]:
        assert parse_path(format_path(path)) == path
    assert format_path(("layers", 2, "kernel")) == "layers[2].kernel"


def test_an_error_raised_without_the_document_is_located_afterwards():
    doc = parse_text("input: [1, 2]\nloss:\n  type: bce\n  target: [1, 0]\n", "f.yaml")
    error = doc.locate(ScenarioError("outputs must be in (0, 1)", key="loss.type"))
    assert (error.file, error.line, error.column) == ("f.yaml", 3, 9)
    assert str(error).startswith("f.yaml:3:9: loss.type: outputs must be in (0, 1)\n     3 |   type: bce\n")


def test_a_suggestion_lists_the_valid_values():
    assert suggest("maxpoool", ["conv", "maxpool"]) == "did you mean 'maxpool'? one of: conv, maxpool"
    assert suggest("lstm", ["conv", "maxpool"]) == "one of: conv, maxpool"
    assert suggest("x", [f"n{i}" for i in range(40)]).endswith(", ... (40 in all)")


def test_bce_on_a_saturated_sigmoid_does_not_ask_for_a_sigmoid(tmp_path):
    # a sigmoid is last; its output is exactly 1 (input 40) or rounded to 1
    path = tmp_path / "saturated.yaml"
    path.write_text("input: [40, 1]\nlayers:\n  - {type: dense, name: h, weights: [[1, 0]], bias: [0]}\n"
                    "  - {type: sigmoid, name: s}\nloss: {type: bce, target: [1]}\n")
    result = _invoke("run", path)
    _refused(result, "saturated.yaml:5:14: loss.type: bce needs outputs strictly between 0 and 1, but the last "
                     "layer's output is 1 (log 0 is infinite; a sigmoid gives exactly 1 only when it saturates")
    assert "put a sigmoid layer last" not in result.output
    path.write_text("input: [4, 1]\nlayers:\n  - {type: dense, name: h, weights: [[1, 0]], bias: [0]}\n"
                    "  - {type: sigmoid, name: s}\nloss: {type: bce, target: [1]}\n"
                    "rounding: {decimals: 1}\n")
    result = _invoke("run", path)
    _refused(result, "output is 1 (log 0 is infinite", "or is rounded")
    assert "put a sigmoid layer last" not in result.output



def test_bce_on_exactly_1_from_a_layer_that_is_no_sigmoid_asks_for_a_sigmoid(tmp_path):
    # a dense output of exactly 1 or 0 is no saturated sigmoid: the hint is the missing sigmoid
    path = tmp_path / "dense.yaml"
    for weight, value in (("2", "1"), ("0", "0")):
        path.write_text(f"input: [0.5]\nlayers:\n  - {{type: dense, name: h, weights: [[{weight}]]}}\n"
                        "loss: {type: bce, target: [1]}\n")
        result = _invoke("run", path)
        _refused(result, f"dense.yaml:4:14: loss.type: bce needs outputs strictly between 0 and 1, but the last "
                         f"layer's output is {value} (put a sigmoid layer last)")
        assert "saturates" not in result.output

# --- user text that steers a terminal -------------------------------------------------------

STEERING = ('name: "Problem 3\\n\\nthe \\e[31mred\\e[0m one\\a"\n'
            'description: "First line.\\n\\n\\tSecond \\u202eparagraph.\\x0c"\n'
            "input: [1, 2]\nlayers: [{type: relu}]\nupstream: {delta: [1, 1]}\n")


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "html", "json"])
def test_names_and_descriptions_reach_no_output_with_control_characters(fmt, tmp_path):
    # escapes in a double-quoted YAML string (or a JSON one) make any character
    path = tmp_path / "steer.yaml"
    path.write_text(STEERING)
    result = _invoke("run", "--format", fmt, path)
    assert result.exit_code == 0, result.output
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", result.output), repr(result.output[:300])
    assert "Problem 3 the [31mred [0m one" in result.output or fmt == "markdown"
    sc = loads(STEERING)
    assert (sc.name, sc.description) == ("Problem 3 the [31mred [0m one", "First line. Second paragraph.")


def test_messages_show_control_characters_instead_of_sending_them(tmp_path):
    path = tmp_path / "evil\x1b[2J.yaml"
    path.write_text('input: [1, 2]\nlayers: [{type: relu, name: "x\\e]0;owned\\a"}]\n')
    result = _invoke("run", path)
    _refused(result, "evil\\x1b[2J.yaml:2:29: layers[0].name: 'x\\x1b]0;owned\\x07' cannot name a layer")
    assert "\x1b" not in result.output and "\x07" not in result.output
    result = _invoke("run", ROOT / "scenarios" / "seed001.yaml", "--only", "c1\x1b[2J")
    _refused(result, "--only c1\\x1b[2J: no step")
    assert "\x1b" not in result.output


def test_a_check_report_shows_file_names_instead_of_obeying_them(tmp_path):
    scenario = ROOT / "scenarios" / "seed001_rounded.yaml"
    folder = tmp_path / "sheets"
    folder.mkdir()
    (folder / "alice\x1b]0;owned\x07.yaml").write_text("loss: 0.5\n")
    (folder / "bob.yaml").write_text("loss: 0.5\n")
    result = _invoke("check", scenario, "--expected", folder)
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "alice\\x1b]0;owned\\x07.yaml" in result.output


def test_only_a_quoted_number_is_told_to_lose_its_quotes():
    text = "input: [1, {}]\nlayers: [{{type: relu}}]\nupstream: {{delta: [1, 1]}}\n"
    with pytest.raises(ScenarioError) as caught:
        loads(text.format('"0.5"'))
    assert caught.value.hint == "write numbers without quotes"
    for word in ("O.5", "nan", "0b11"):
        with pytest.raises(ScenarioError, match="found the text") as caught:
            loads(text.format(word))
        assert caught.value.hint is None, word


def test_the_readme_scenario_format_example_is_valid_yaml():
    # its `expected:` once held c1.grad.kernel[0,1] as a key inside { }, where '[' opens a list
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Scenario format", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    line = next(line for line in block.splitlines() if line.startswith("expected:"))
    expected = parse_text(line.split("#")[0] + "\n", "README.md").data["expected"]
    assert "c1.grad.kernel[0,1]" in expected


def test_an_indexed_key_inside_braces_gets_a_hint_to_quote_it():
    with pytest.raises(ScenarioError) as caught:
        parse_text("expected: {p1.delta: 1, c1.grad.kernel[0,1]: 0.094061}\n", "s.yaml")
    assert "quotes" in str(caught.value) and "'c1.grad.kernel[0,1]'" in str(caught.value)



def test_a_shape_error_blames_the_layer_where_the_sizes_went_wrong(tmp_path):
    """Seed 001 with a 3×3 kernel typed for its 2×2: the count only fails at the dense layer
    ("flatten f makes 1"), but the max-pool below the conv already drops a row and a column
    of its 3×3 map, so the error stands at the conv's kernel, with the chain of shapes."""
    seed = (Path(__file__).parent.parent / "scenarios" / "seed001.yaml").read_text()
    path = tmp_path / "kernel.yaml"
    path.write_text(seed.replace("kernel: [[-0.13, 0.15], [-0.55, 0.60]]",
                                 "kernel: [[-0.13, 0.15, 0.1], [-0.55, 0.60, 0.2], [0, 0, 0]]"))
    with pytest.raises(ScenarioError) as caught:
        load(path)
    error = caught.value
    assert error.key == "layers[0].kernel"
    line = path.read_text().splitlines()[error.line - 1]
    assert "kernel: [[-0.13, 0.15, 0.1]" in line
    assert error.message.startswith("dense h expects 4 inputs; flatten f makes 1; the shapes: input 5×5 → c1 (conv) 3×3")
    assert "the sizes first go wrong at c1 (conv), whose 3×3 output p1 reads" in error.message
    assert error.hint.startswith("check c1's kernel")
    result = _invoke("run", path)
    assert result.exit_code == 2 and "Traceback" not in result.output and "layers[0].kernel" in result.output
    # without a pooling layer that drops cells, nothing says which size was meant: the
    # layer that noticed keeps the error (tests/bad/dense_width.yaml above)
