"""The view every renderer reads (`render/view.py`) and the table layout (`render/layout.py`):
the formats agree on a step, the results block ends every format, `--digits`, `--summary`,
`--list`, `--only` with phases and prefixes, the legend, padding taps and explain pointers."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

import bptrace
from bptrace.cli import main
from bptrace.render import html, latex, markdown
from bptrace.render.layout import table_format
from bptrace.render.view import trace_view

from conftest import ROOT

SEED001 = ROOT / "scenarios" / "seed001.yaml"
STRIDE = ROOT / "scenarios" / "stride_padding.yaml"
ZHANG = ROOT / "scenarios" / "zhang2016.yaml"


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


@pytest.fixture(scope="module")
def seed001():
    return bptrace.run(bptrace.load(SEED001))


# --- numbers -----------------------------------------------------------------------------

def test_seven_digits_show_the_source_numbers_as_printed():
    # seed 001's answer prints 0.0364182, 0.068628, 0.04675125, −0.06818625 for p1.delta
    fmt = table_format([0.036418200000000005, 0.068628, 0.046751249999999994, -0.06818625])
    assert [fmt.text(v) for v in (0.036418200000000005, 0.068628, 0.046751249999999994, -0.06818625)] == \
        ["0.0364182", "0.068628", "0.04675125", "−0.06818625"]


def test_small_steps_share_a_power_of_ten_and_tiny_numbers_are_not_zero():
    fmt = table_format([4.89e-3, -1.59e-5, 1e-12])
    assert fmt.scale_text == "×10⁻³" and fmt.text(4.89e-3) == "4.89" and fmt.text(-1.59e-5) == "−0.0159"
    assert fmt.text(1e-12) == "≈0" and fmt.text(0.0) == "0"
    assert table_format([0.5, 0.25]).scale_text == ""


def test_digits_option_sets_the_shown_precision_only():
    four = run_cli(SEED001, "--only", "c1.grad.kernel", "--digits", "4").output
    assert "0  0.04459  0.09412" in four and "0.09411869" not in four
    seven = run_cli(SEED001, "--only", "c1.grad.kernel").output
    assert "0.0445918   0.09411869" in seven
    # JSON keeps every digit whatever --digits says
    assert "0.09411868649999999" in run_cli(SEED001, "--format", "json", "--digits", "3").output


# --- the results block ----------------------------------------------------------------------

def test_results_end_every_format(seed001):
    text = seed001.to_text(width=100)
    results = text.split("━━ results")[1]
    assert "c1.grad.kernel  gradient of c1.kernel" in results and "h.grad.bias  gradient of h.bias" in results
    # a trace made in Python knows its scenario's path
    assert f"bptrace explain {SEED001}" in results and "'c1.grad.kernel[0,1]'" in results
    assert "## Results" in markdown.render(seed001)
    assert r"\section{Results}" in latex.render(seed001) and r"\bpresult{" in latex.render(seed001)
    assert '<h2 id="results">Results</h2>' in html.render(seed001)


def test_results_hold_the_loss_the_gradients_and_the_updates():
    view = trace_view(bptrace.run(bptrace.load(ZHANG)), steps=False)
    assert view.loss == "1.002022" and view.sections == []
    names = [r.name for r in view.results]
    assert names[:4] == ["C1.grad.kernel", "C1.new.kernel", "C1.grad.bias", "C1.new.bias"]
    assert "FC.new.weights" in names and view.explain.startswith("bptrace explain")


def test_summary_prints_the_network_and_the_results_only():
    out = run_cli(ZHANG, "--summary", "--width", "100").output
    assert "total       3898" in out and "━━ results" in out and "loss = 1.002022" in out
    assert "━━ forward" not in out and "━━ backward" not in out
    assert len(out.splitlines()) < 200      # 6,743 lines for the whole trace


def test_explain_command_in_results_names_the_scenario_file():
    out = run_cli(SEED001, "--only", "c1.grad.kernel", "--width", "200").output
    assert "every term of any number: bptrace explain " + str(SEED001) + " 'c1.grad.kernel[0,1]'" in out


# --- choosing steps -------------------------------------------------------------------------

def test_list_names_every_step_with_its_phase_and_shape(seed001):
    out = run_cli(SEED001, "--list").output.splitlines()
    assert len(out) == len(seed001.steps)
    assert re.fullmatch(r"c1\.grad\.kernel\s+gradients\s+2×2", out[seed001.names().index("c1.grad.kernel")])


@pytest.mark.parametrize("only, wanted", [
    ("backward", ["h.delta", "h.grad.weights", "h.grad.bias", "f.delta", "s1.delta", "p1.delta", "c1.delta",
                  "c1.grad.kernel", "c1.grad.bias", "input.delta"]),
    ("gradients", ["h.grad.weights", "h.grad.bias", "c1.grad.kernel", "c1.grad.bias"]),
    ("c1.grad", ["c1.grad.kernel", "c1.grad.bias"]),
    ("c1", ["c1.kernel", "c1.bias", "c1.out", "c1.delta", "c1.grad.kernel", "c1.grad.bias"]),
    ("forward", ["input", "c1.kernel", "c1.bias", "c1.out", "p1.out", "s1.out", "f.out", "h.weights", "h.bias",
                 "h.out"]),
])
def test_only_takes_phases_and_name_prefixes(seed001, only, wanted):
    out = run_cli(SEED001, "--only", only).output.split("━━ results")[0].split("total        15")[1]
    shown = [name for name in seed001.names() if re.search(rf"^{re.escape(name)}(  | = )", out, re.M)]
    assert shown == wanted


def test_only_with_an_unknown_name_points_at_list():
    result = run_cli(SEED001, "--only", "C1.grad")
    assert result.exit_code == 2 and "bptrace run --list SCENARIO" in result.output


# --- what the formats share -------------------------------------------------------------------

def test_every_format_writes_a_step_the_same(seed001):
    # the terminal and Markdown once disagreed on a step; now both write the view's words
    text, md, page = seed001.to_text(width=200), markdown.render(seed001), html.render(seed001)
    for line in ("s1.out[0,0] = σ(0.3164) = 0.5784467 → 0.58 given",
                 "c1.grad.kernel[0,1] = 0.068628·0.84 + 0.0364182·0.22 + 0.04675125·0.74 − 0.06818625·0.09 = 0.09411869",
                 "left out of each sum: 12 of its 16 terms, which have a zero factor"):
        assert line in text and line in md
    assert "0.5784467 → 0.58 given" in page


def test_legend_says_what_a_delta_is(seed001):
    assert "L.delta = ∂loss/∂L.out · L.grad.P = ∂loss/∂L.P" in seed001.to_text(width=100)
    zhang = run_cli(ZHANG, "--summary").output
    assert "L.new.P = L.P − η·L.grad.P" in zhang


def test_taps_on_padding_are_counted():
    out = run_cli(STRIDE, "--only", "c1.out", "--width", "120").output
    assert "= 0.6·0.2 + 0.1·0.8 − 0.3·0.6 + 0.4·0.3 + 0.1 = 0.24   (+5 on padding)" in out
    assert "c1.out[0,1] = −0.4·0.8 + 0.6·0.1 + 0.1·0.5 + 0.2·0.3 − 0.3·0.7 + 0.4·0.2 + 0.1 = −0.18   (+3 on padding)" \
        in out
    assert "(+n on padding): taps of the kernel on the zero padding, which add nothing" in out


def test_steps_without_written_sums_point_at_explain():
    out = run_cli(ZHANG, "--only", "C1.grad.kernel", "--width", "200").output
    assert f"see any element's terms: bptrace explain {ZHANG} 'C1.grad.kernel[1,1,1]'" in out


# --- the smaller items ---------------------------------------------------------------------------

GRAPH = """
input: [[0.2, -0.5, 0.9], [0.7, 0.3, -0.8], [-0.6, 0.05, 0.35]]
layers:
  - {type: conv, name: c1, kernel: [[0.1, -0.2], [0.3, 0.4]], padding: 1}
  - {type: relu, name: r1}
  - {type: conv, name: c2, kernel: [[0.5, 0.1], [-0.3, 0.2]]}
  - {type: add, name: skip, from: [c2, input]}
  - {type: flatten, name: f}
  - {type: dense, name: h, weights: [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]]}
loss: {type: half_sse, target: [1]}
"""


def test_sums_name_the_elements_they_add(seed001):
    text = seed001.to_text(width=100)
    assert ("c1.out[0,0] = c1.kernel[0,0]·input[0,0] + c1.kernel[0,1]·input[0,1] + c1.kernel[1,0]·input[1,0]\n"
            "                + c1.kernel[1,1]·input[1,1] + c1.bias\n"
            "              = −0.13·0.51 + 0.15·0.9 − 0.55·0.4 + 0.6·0.62 + 0.03 = 0.2507") in text
    # a delta summed over two readers names every element of every sum
    trace = bptrace.run(bptrace.loads(GRAPH))
    text = trace.to_text(width=200, only="input.delta")
    assert "input.delta[0,0] = skip.delta[0,0] + c1.delta[0,0]·c1.kernel[1,1]" in text


def test_the_loss_is_written_as_on_paper():
    text = bptrace.run(bptrace.loads(GRAPH)).to_text(width=100, only=["loss", "h.delta"])
    assert "loss = ½·(0.4177 − 1)² = 0.1695366" in text
    assert "h.delta = 0.4177 − 1 = −0.5823" in text


def test_softmax_values_are_derived():
    text = bptrace.run(bptrace.load(STRIDE)).to_text(width=100, only="h.delta")
    assert "softmax(h.out)[0] = e^0.571 / (e^0.571 + e^−0.127)" in text
    soft = bptrace.run(bptrace.loads("input: [0.3, -0.2]\nlayers: [{type: softmax, name: s}]\n"
                                     "upstream: {delta: [1, 0]}\n")).to_text(width=100, only="s.out")
    assert "s.out[0] = softmax(0.3) = e^0.3 / (e^0.3 + e^−0.2) = 0.6224593" in soft


def test_whole_step_explain_is_laid_out_as_the_tensor():
    out = CliRunner().invoke(main, ["explain", str(STRIDE), "r1.delta", "--width", "100"]).output
    assert re.search(r"^      0 +1 +2\n  0   0 +0 +0\n  1   0\.7345186171  −0\.7345186171   0\n", out, re.M), out


def test_a_shape_mismatch_shows_the_shapes_that_led_to_it(tmp_path):
    path = tmp_path / "problem.yaml"
    path.write_text((ROOT / "scenarios" / "seed001.yaml").read_text().replace(
        "kernel: [[-0.13, 0.15], [-0.55, 0.60]]", "kernel: [[-0.13, 0.15, 0.1], [-0.55, 0.60, 0.2], [0, 0, 0]]"))
    result = run_cli(path)
    assert result.exit_code == 2
    assert ("the shapes: input 5×5 → c1 (conv) 3×3 → p1 (maxpool, which drops its input's last row and column) 1 "
            "→ s1 (sigmoid) 1 → f (flatten) 1 → h (dense)") in result.output


def test_transposed_weights_are_named(tmp_path):
    result = run_cli_text(tmp_path, "input: [1, 2, 3]\nlayers: [{type: dense, name: h, weights: [[1, 2], [3, 4], [5, 6]]}]\n"
                                    "upstream: {delta: [1, 1]}\n")
    assert result.exit_code == 2 and "the weights look transposed: they are 3×2, [in][out]" in result.output


def test_windows_that_do_not_tile_the_map_are_warned_about(tmp_path):
    result = run_cli_text(tmp_path, "input: [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]\n"
                                    "layers: [{type: maxpool, name: p1, size: 3, stride: 2}]\nupstream: {delta: 1}\n")
    assert result.exit_code == 0
    assert "warning: the 3×3 windows with stride 2,2 do not tile the 4×4 map: its last row and column are never" \
        in " ".join(result.output.split())


def run_cli_text(tmp_path, text):
    path = tmp_path / "case.yaml"
    path.write_text(text)
    return run_cli(path, "--width", "200")


def test_the_python_api_takes_digits_and_the_notebook_gets_the_heat_colours(seed001):
    assert "0  0.0446  0.0941" in seed001.to_text(only="c1.grad.kernel", digits=3)
    assert "| 0 | 0.0446 | 0.0941 |" in seed001.to_markdown(only="c1.grad.kernel", digits=3)
    zhang = bptrace.run(bptrace.load(ZHANG))
    html_body = zhang["C1.grad.kernel"]._repr_html_()
    scope = re.match(r'<div class="(bptrace-[0-9a-f]+)">', html_body).group(1)
    assert f".{scope} .hp10 {{" in html_body and 'class="hp' in html_body


def test_the_largest_floats_have_a_table_format():
    """A step whose largest value is near the float limit is shown, not an OverflowError
    (found by the structural fuzz)."""
    from bptrace.render.layout import table_format
    fmt = table_format([1.7e308, -2.5, 0.0])
    assert fmt.exponent == 308 and fmt.text(1.7e308) == "1.7"
    assert table_format([0.09999999999999999]).text(0.09999999999999999) == "0.1"
