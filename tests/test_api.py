"""The Python API: load/run, a trace's explain/check/to_*, how each object shows itself, and
the README's "Python API" examples, run as doctests."""
from __future__ import annotations

import doctest
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

import bptrace
from bptrace.cli import main
from conftest import ROOT

SEED001 = ROOT / "scenarios/seed001.yaml"


# --- the README's examples -------------------------------------------------------------------

def _readme_blocks():
    """The `pycon` examples of the README's "Python API" section, as (line, text)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Python API\n")
    end = text.index("\n## ", start + 1)
    blocks = []
    for found in re.finditer(r"```pycon\n(.*?)```", text[start:end], re.S):
        blocks.append((text[:start + found.start()].count("\n") + 2, found.group(1)))
    return blocks


def _run_doctest(block, line, globs):
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    test = parser.get_doctest(block, globs, f"README.md:{line}", str(ROOT / "README.md"), line)
    out = []
    runner.run(test, out=out.append, clear_globs=False)
    globs.update(test.globs)        # later blocks go on from earlier ones, as a reader's session
    assert runner.failures == 0, "".join(out)
    return runner.tries


def test_the_readme_python_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = [(line, block) for line, block in _readme_blocks() if "import torch" not in block]
    assert len(blocks) >= 2
    globs: dict = {}
    tries = sum(_run_doctest(block, line, globs) for line, block in blocks)
    assert tries >= 15


def test_the_readme_pytorch_examples_run(monkeypatch, torch):
    monkeypatch.chdir(ROOT)
    blocks = [(line, block) for line, block in _readme_blocks() if "import torch" in block]
    assert blocks
    globs: dict = {"bptrace": bptrace}
    for line, block in blocks:
        _run_doctest(block, line, globs)


def test_the_package_docstring_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert doctest.testmod(bptrace, optionflags=doctest.ELLIPSIS).failed == 0
    from bptrace import api

    assert doctest.testmod(api).failed == 0


# --- load and run ----------------------------------------------------------------------------

def test_load_takes_a_path_text_or_a_mapping_alike():
    text = SEED001.read_text(encoding="utf-8")
    import yaml

    traces = [bptrace.run(source) for source in (SEED001, str(SEED001), text, yaml.safe_load(text))]
    for trace in traces[1:]:
        assert trace.names() == traces[0].names()
        for name in trace.names():
            assert np.array_equal(trace[name].values, traces[0][name].values), name


def test_a_mapping_may_hold_numpy_arrays_and_tuples():
    trace = bptrace.run({"input": np.array([1.0, 2.0]), "layers": ({"type": "dense", "weights": np.eye(2)},),
                         "upstream": {"delta": (np.float64(1.0), 0.5)}})
    assert trace["dense1.grad.weights"].shown.tolist() == [[1.0, 2.0], [0.5, 1.0]]


def test_a_mistake_in_a_mapping_names_its_key_path_and_no_line():
    with pytest.raises(bptrace.ScenarioError) as error:
        bptrace.load({"input": [1.0, 2.0], "layers": [{"type": "dense", "weights": [[1.0, float("nan")]]}],
                      "upstream": {"delta": [1.0]}})
    assert error.value.line is None and error.value.key == "layers[0].weights[0][1]"
    with pytest.raises(bptrace.ScenarioError) as error:
        bptrace.load({"input": [1.0], "layers": [{"type": "dense", "wieghts": [[1.0]]}], "upstream": {"delta": [1]}})
    assert error.value.key == "layers[0].wieghts" and "did you mean 'weights'" in str(error.value)
    assert str(error.value).startswith("layers[0].wieghts: unknown key")


def test_load_refuses_what_is_not_a_source():
    with pytest.raises(TypeError, match="path, YAML text or a mapping"):
        bptrace.load(42)


def test_run_checks_the_arithmetic():
    scenario = bptrace.load(SEED001)
    assert bptrace.run(scenario, arithmetic="float").loss is None
    with pytest.raises(ValueError, match="arithmetic='float32'"):
        bptrace.run(scenario, arithmetic="float32")


def test_run_takes_a_loaded_float_scenario_to_exact_arithmetic_without_changing_it():
    scenario = bptrace.load(SEED001)
    exact = bptrace.run(scenario, arithmetic="exact")
    assert exact.arithmetic == "exact" and exact["p1.delta"].exact is not None
    assert scenario.numbers.name == "float" and bptrace.run(scenario)["p1.delta"].exact is None


# --- a trace's methods -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def trace():
    return bptrace.run(bptrace.load(SEED001))


@pytest.mark.parametrize("fmt, method", [("json", "to_json"), ("markdown", "to_markdown"),
                                         ("latex", "to_latex"), ("html", "to_html"), ("text", "to_text")])
def test_each_export_is_what_the_command_writes(trace, tmp_path, fmt, method):
    out = tmp_path / f"trace.{fmt}"
    result = CliRunner().invoke(main, ["run", str(SEED001), "--format", fmt, "--only", "c1.*", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert getattr(trace, method)(only="c1.*") == out.read_text(encoding="utf-8")


def test_only_names_an_unknown_step(trace):
    with pytest.raises(KeyError, match="did you mean 'c1.grad.kernel'"):
        trace.to_json(only=["c1.grad.kernal"])


def test_explain_is_what_the_command_shows(trace):
    explanation = trace.explain("input.delta[1,2]")
    assert explanation.value == trace["input.delta"].values[0, 0, 1, 2]
    result = CliRunner().invoke(main, ["explain", str(SEED001), "input.delta[1,2]", "--width", "100"])
    assert explanation.to_text(width=100) == result.output
    assert "c1.delta" in trace.explain("c1.delta").to_text()
    with pytest.raises(bptrace.ScenarioError, match="did you mean 'c1.grad.kernel'"):
        trace.explain("c1.grad.kernal[0,1]")


def test_explain_and_check_need_the_scenario():
    from bptrace.engine import run

    bare = run(bptrace.load(SEED001))
    with pytest.raises(ValueError, match="bptrace.run"):
        bare.explain("c1.out[0,0]")


def test_check_takes_a_mapping_of_numbers_as_written(trace):
    report = trace.check({"p1.delta": [[0.0364, 0.0686], [0.0467, -0.0681]], "c1.grad.kernel[0,1]": 0.0941})
    assert (report.passed, report.failed, report.exit_code) == (5, 0, 0)
    assert [row.how for row in report.files[0].rows][:3] == ["as written (4 decimals)"] * 2 + \
        ["matches when truncated (4 decimals)"]
    wrong = trace.check({"c1.grad.kernel": [[0.0683, 0.0113], [0.0941, 0.0446]]})
    assert wrong.failed == 4 and wrong.files[0].diagnosis[0].id == "kernel-not-flipped"
    assert json.loads(wrong.to_json())["files"][0]["diagnosis"][0]["id"] == "kernel-not-flipped"


def test_check_takes_arrays_at_their_precision_and_answer_files(trace, tmp_path):
    kernel = trace["c1.grad.kernel"].shown
    assert trace.check({"c1.grad.kernel": kernel.astype(np.float32)}).failed == 0
    assert trace.check({"c1.grad.kernel": (kernel * 1.01).astype(np.float32)}).failed == 4
    sheet = tmp_path / "answers.yaml"
    sheet.write_text("c1.grad.kernel[0,1]: 0.094061\n")
    report = trace.check(sheet)
    assert report.failed == 1 and report.files[0].file == str(sheet)


def test_a_broken_answer_is_reported_not_raised(trace):
    report = trace.check({"c1.grad.kernal": 0.1})
    assert report.exit_code == 2 and "did you mean 'c1.grad.kernel'" in report.files[0].error
    assert "error:" in str(report)


def test_check_with_a_tolerance(trace):
    kernel = trace["c1.grad.kernel"].shown
    assert trace.check({"c1.grad.kernel": (kernel + 0.001).tolist()}, tolerance=0.002).failed == 0
    assert trace.check({"c1.grad.kernel": (kernel + 0.001).tolist()}, tolerance={"abs": 0.0005}).failed == 4


# --- how objects show themselves -------------------------------------------------------------

def test_repr_is_one_short_line_and_str_the_terminal_text(trace, tmp_path):
    step = trace["c1.grad.kernel"]
    for thing in (trace, step, trace.explain("c1.grad.kernel[0,1]"), trace.check({"c1.grad.kernel[0,0]": 0.0446})):
        assert "\n" not in repr(thing) and len(repr(thing)) < 120
    assert repr(step) == "<Step c1.grad.kernel (backward) 2×2>"
    out = tmp_path / "t.txt"
    CliRunner().invoke(main, ["run", str(SEED001), "-o", str(out)])
    assert trace.to_text(width=100) == out.read_text(encoding="utf-8")
    assert "c1.grad.kernel[0,1] = 0.068628·0.84" in trace.to_text()
    assert "0.09411869" in str(step) and "\x1b[" not in str(step)


def test_ipython_shows_the_terminal_text(trace):
    from IPython.lib.pretty import pretty

    assert pretty(trace).startswith("seed 001 worked example") and "━━ forward" in pretty(trace)


def test_rich_shows_it_in_colour(trace):
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=100, force_terminal=True, color_system="standard").print(trace["c1.grad.kernel"])
    assert "\x1b[" in buffer.getvalue() and "0.09411869" in buffer.getvalue()


def test_the_html_is_static_and_styles_only_itself(trace):
    for thing in (trace, trace["c1.grad.kernel"], trace.explain("c1.grad.kernel[0,1]"),
                  trace.check({"c1.grad.kernel[0,0]": 0.0446})):
        html = thing._repr_html_()
        scope = re.match(r'<div class="(bptrace-[0-9a-f]{8})">', html).group(1)
        assert "<script" not in html and "<html" not in html and "<body" not in html
        for style in re.findall(r"<style>(.*?)</style>", html, re.S):
            flat = re.sub(r"@media[^{]*\{", "", style)
            for selectors in re.findall(r"([^{}]+)\{[^{}]*\}", flat):
                for selector in selectors.split(","):
                    assert selector.strip().startswith(f".{scope}"), selector
    assert trace._repr_html_() != trace._repr_html_()     # each display has a class of its own


@pytest.mark.parametrize("path", ["scenarios/seed001.yaml", "scenarios/batchnorm.yaml",
                                  "scenarios/cs231n_circuit.yaml", "scenarios/lstm_gomez.yaml"])
def test_the_notebook_html_promises_nothing_that_needs_the_pages_script(path):
    # the page's sidebar and click-to-explain panel need its layout and script; a notebook
    # shows neither, so no room is kept for the sidebar and no number claims to be clickable
    trace = bptrace.run(ROOT / path)
    for thing in (trace, trace[trace.names()[-1]]):
        html = thing._repr_html_()
        scope = re.match(r'<div class="(bptrace-[0-9a-f]{8})">', html).group(1)
        style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
        screen = re.sub(r"@media print \{(?:[^{}]*\{[^{}]*\})*\s*\}", "", style)
        margins = re.findall(rf"\.{scope} \{{[^}}]*margin-left: ([^;]+);", screen)
        assert margins and margins[-1].strip() in ("0", "0px"), margins   # the last one wins
        assert "data-e=" not in html and "click a number" not in html


def test_a_step_outside_a_trace_says_so():
    from bptrace.trace import Step

    step = Step(name="x", phase="forward", layer=None, rule="x", values=np.zeros((1, 2)))
    assert repr(step) == "<Step x (forward) 2>"
    with pytest.raises(ValueError, match="belongs to no trace"):
        str(step)


def test_import_bptrace_stays_light():
    import subprocess
    import sys

    # `bptrace --help` (and each command's) starts without numpy, torch, jsonschema
    code = ("import sys, bptrace, bptrace.api, bptrace.display; from click.testing import CliRunner; "
            "from bptrace.cli import main; "
            "[CliRunner().invoke(main, [*c, '--help']) for c in ([], ['schema'], ['from-torch'], ['run'])]; "
            "heavy = [m for m in ('numpy', 'torch', 'jsonschema', 'rich', 'yaml') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
