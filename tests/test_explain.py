"""`bptrace explain` and the unrolled conv matrix.

Oracles: numbers printed by seed 001 (BRIEF section 4), PyTorch autograd in float64 for the
conv geometry cases (stride, padding, groups, the convolution convention), and the
hand-written pattern of seed 002's w₁…w₄ matrix.  Where an explanation is compared with the
trace it explains, that is the point of the test (its total *is* the trace's number, and
every factor it names holds the value it says); the full-convolution view is computed
apart from the engine, so its agreement is a real check.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from bptrace.render.common import signed
from bptrace.cli import main
from bptrace.engine import run
from bptrace.errors import ScenarioError
from bptrace.explain import Explanation, StepOverview, explain, explain_many, locate, overview
from bptrace.render.explain_text import render, render_unrolled
from bptrace.scenario import load, loads
from bptrace.tensors import canonical_index
from bptrace.unrolled import unroll
from conftest import ROOT, SCENARIOS

SEED001 = ROOT / "scenarios" / "seed001.yaml"
SEED002 = ROOT / "scenarios" / "seed002_two_convs.yaml"
SAMPLES = 4          # elements explained per step of more than SMALL elements
SMALL = 9


def sampled(shape, rng):
    cells = list(np.ndindex(*shape))
    if len(cells) <= SMALL:
        return cells
    picks = {0, len(cells) - 1} | {int(k) for k in rng.choice(len(cells), SAMPLES - 2, replace=False)}
    return [cells[k] for k in sorted(picks)]


def close(a, b):
    return abs(a - b) <= 1e-12 + 1e-9 * max(abs(a), abs(b))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_name_of_every_shipped_scenario(path):
    scenario = load(path)
    trace = run(scenario)
    rng = np.random.default_rng(0)
    wanted = [(name, index) for name, shape in scenario.shapes.items() for index in sampled(shape, rng)]
    explanations = explain_many(scenario, wanted)
    base = scenario.conventions.index_base
    for (name, index), e in zip(wanted, explanations):
        step = trace[name]
        engine = step.computed[index] if step.computed is not None else step.values[index]
        assert e.name == name and e.canonical == index
        assert e.total == pytest.approx(engine, rel=1e-12, abs=1e-15), e.element
        assert e.value == step.values[index], e.element
        assert e.rule == step.rule
        if e.kind == "sum" and e.terms:
            assert close(e.terms[-1].running, e.total), e.element
        if e.kind == "max":
            assert e.candidates[e.winner].value == e.total
            assert all(c.value <= e.total for c in e.candidates)
        if e.kind == "apply":
            assert e.argument.name in trace
        # every factor that names a traced value holds that value at that index
        operands = [o for t in e.terms for o in t.operands] + e.candidates + ([e.argument] if e.argument else [])
        for operand in operands:
            if operand.name in trace and operand.index is not None:
                shape = trace[operand.name].shape
                assert trace.value(operand.name)[canonical_index(shape, operand.index, base)] == operand.value, \
                    f"{e.element}: {operand.label}"
        if e.full_conv is not None:
            assert e.full_conv.agree and close(e.full_conv.total, e.total), e.element
    # a name without an index lists every element of the step
    for name in scenario.shapes:
        o = overview(scenario, trace, name)
        assert len(o.elements) == trace[name].values.size
        assert [v for _, v in o.elements] == list(trace[name].values.reshape(-1))


def test_seed001_kernel_gradient_term_by_term():
    # BRIEF section 4: c1.grad.kernel[0,1] = 0.09411869 from the four winners' deltas
    e = explain(load(SEED001), "c1.grad.kernel[0,1]")
    assert e.kind == "sum" and len(e.terms) == 16
    nonzero = [(t.operands[0].label, t.operands[0].value, t.operands[1].label, t.operands[1].value)
               for t in e.terms if t.product != 0]
    assert [(a, c) for a, _, c, _ in nonzero] == [("c1.delta[0,2]", "input[0,3]"), ("c1.delta[1,1]", "input[1,2]"),
                                                  ("c1.delta[2,1]", "input[2,2]"), ("c1.delta[3,3]", "input[3,4]")]
    assert [b for _, b, _, _ in nonzero] == pytest.approx([0.068628, 0.0364182, 0.04675125, -0.06818625])
    assert [d for _, _, _, d in nonzero] == [0.84, 0.22, 0.74, 0.09]
    assert e.total == pytest.approx(0.09411869, abs=5e-9)


def test_seed001_given_value_is_said():
    e = explain(load(SEED001), "s1.out[0,0]")
    assert e.kind == "apply" and e.fn == "σ" and e.argument.label == "p1.out[0,0]"
    assert e.replaced == "given" and e.value == 0.58 and e.total == pytest.approx(0.5784466549, abs=1e-10)
    text = _text(e)
    assert "given: later steps use 0.58 instead of 0.5784466549" in text


def test_seed001_sigmoid_delta_names_each_factor():
    e = explain(load(SEED001), "p1.delta[0,0]")
    assert [o.label for o in e.terms[0].operands] == ["s1.delta[0,0]", "s1.out[0,0]", "1 − s1.out[0,0]"]
    assert e.total == pytest.approx(0.0364182)


def test_max_pool_window_winner_and_loser():
    scenario = load(SEED001)
    won = explain(scenario, "c1.delta[1,1]")
    assert len(won.windows) == 1 and won.windows[0].won
    assert won.windows[0].output.label == "p1.out[0,0]" and won.total == pytest.approx(0.0364182)
    lost = explain(scenario, "c1.delta[0,0]")
    assert not lost.windows[0].won and lost.terms == [] and lost.total == 0
    assert lost.windows[0].cells[lost.windows[0].winner].label == "c1.out[1,1]"
    assert "c1.out[1,1] won" in _text(lost)


TIE = """
input: [[1, 1, 0], [0, 0.5, 2], [1, 0, 0]]
layers:
  - {type: maxpool, name: p, size: 2, stride: 1}
upstream: {layer: p, delta: [[1, 2], [3, 4]]}
"""


def test_max_pool_tie_and_overlapping_windows():
    scenario = loads(TIE)
    forward = explain(scenario, "p.out[0,0]")
    assert forward.tie and forward.winner == 0 and forward.candidates[0].label == "input[0,0]"
    assert "tie" in _text(forward)
    # input[1,1] = 0.5 is in all four windows and wins none; input[1,2] = 2 wins two
    middle = explain(scenario, "input.delta[1,1]")
    assert len(middle.windows) == 4 and not any(w.won for w in middle.windows) and middle.total == 0
    right = explain(scenario, "input.delta[1,2]")
    assert sorted(w.output.label for w in right.windows if w.won) == ["p.out[0,1]", "p.out[1,1]"]
    assert right.total == 2 + 4


def test_average_pool_share():
    scenario = loads("""
input: [[1, 2], [3, 4]]
layers: [{type: avgpool, name: a, size: 2}]
upstream: {layer: a, delta: 8}
""")
    e = explain(scenario, "input.delta[1,0]")
    assert e.share == "1/4" and e.terms[0].operands[0].label == "1/4" and e.total == 2
    assert "1/4 of its error" in _text(e)


def test_dense_input_delta_is_a_row_of_the_transpose():
    e = explain(load(SEED001), "f.delta[0]")
    assert [w.label for w in e.dense_row.weights] == ["h.weights[0,0]", "h.weights[1,0]"]
    assert [w.value for w in e.dense_row.weights] == [0.61, 0.02]
    assert [d.value for d in e.dense_row.deltas] == [0.25, -0.15]
    assert e.total == pytest.approx(0.1495)


def test_value_with_no_terms_says_where_it_comes_from():
    scenario = load(SEED001)
    assert explain(scenario, "c1.kernel[0,0]").origin == "as written"
    assert "upstream" in explain(scenario, "h.delta[1]").origin
    assert explain(scenario, "input[4,4]").total == 0.57


def test_whole_step_and_single_numbers():
    scenario = load(SEED001)
    o = explain(scenario, "c1.out")
    assert isinstance(o, StepOverview) and len(o.elements) == 16 and o.elements[0][0] == (0, 0)
    assert isinstance(explain(scenario, "c1.bias"), Explanation)   # one number needs no index
    assert isinstance(explain(load(SEED002), "loss"), Explanation)


@pytest.mark.parametrize("target, message, hint", [
    ("c1.ou[0,1]", "'c1.ou' is not a value", "did you mean 'c1.out'?"),
    ("c1.out[0,9]", "out of range", "shape is 4×4"),
    ("c1.out[0]", "needs 2 indices", None),
    ("c1.out[0", "not a name", None),
])
def test_missing_names_and_indices(target, message, hint):
    with pytest.raises(ScenarioError) as error:
        locate(load(SEED001), target)
    assert message in str(error.value)
    if hint:
        assert hint in str(error.value)
    result = CliRunner().invoke(main, ["explain", str(SEED001), target])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


# --- conv geometry: the direct chain rule, the full convolution, the unrolled matrix -----------

GEOMETRY = {
    "stride 1": ("[4][4]", "kernel: [[0.3, -0.2], [0.5, 0.1]]", {}),
    "stride 2": ("[5][5]", "kernel: [[0.3, -0.2, 0.4], [0.5, 0.1, -0.6], [0.2, 0.7, -0.1]], stride: 2", {}),
    "padding 1": ("[4][4]", "kernel: [[0.3, -0.2, 0.4], [0.5, 0.1, -0.6], [0.2, 0.7, -0.1]], padding: 1", {}),
    "stride 2, padding 1, uneven": ("[6][5]", "kernel: [[0.3, -0.2, 0.4], [0.5, 0.1, -0.6], [0.2, 0.7, -0.1]], "
                                    "stride: [2, 1], padding: [1, 0]", {}),
    "padding wider than the kernel": ("[3][3]", "kernel: [[0.3, -0.2], [0.5, 0.1]], padding: 2", {}),
    "convolution convention": ("[4][4]", "kernel: [[0.3, -0.2, 0.4], [0.5, 0.1, -0.6], [0.2, 0.7, -0.1]], "
                               "padding: 1", {"kernel": "convolution"}),
    "two maps in, three out": ("[2][4][4]", "out_channels: 3, size: 2, stride: 2", {}),
    "groups 2": ("[4][4][4]", "out_channels: 4, size: [2, 3], groups: 2, padding: [0, 1]", {}),
    "batch of 2": ("[2][2][4][4]", "out_channels: 2, size: 2", {}),
    "dilation 2, stride 2, padding 1": ("[6][7]", "out_channels: 1, size: 2, dilation: 2, stride: 2, padding: 1", {}),
    "dilation pair, convolution, no bias": ("[2][6][7]", "out_channels: 2, size: [2, 3], dilation: [2, 3], "
                                            "padding: [1, 2], bias: false", {"kernel": "convolution"}),
    "dilation, groups, padding past the span": ("[4][5][5]", "out_channels: 2, size: 2, dilation: 2, groups: 2, "
                                                "padding: 3", {}),
}


def geometry_scenario(name):
    shape, conv, conventions = GEOMETRY[name]
    dims = [int(d) for d in re.findall(r"\d+", shape)]
    rng = np.random.default_rng(len(name))
    x = np.round(rng.uniform(-1, 1, dims), 2).tolist()
    text = f"""
conventions: {{kernel: {conventions.get('kernel', 'correlation')}}}
init: {{scheme: glorot_uniform, seed: 3}}
input: {x}
layers:
  - {{type: conv, name: c, {'' if 'bias' in conv else 'bias: 0.1, '}{conv}}}
  - {{type: tanh, name: t}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: d, out: 1}}
loss: {{type: half_sse, target: {[[0.2]] * dims[0] if len(dims) == 4 else 0.2}}}
"""
    return loads(text)


def torch_conv(torch, scenario):
    """The conv layer in PyTorch: its output and the input's gradient from the same delta."""
    import torch.nn.functional as F

    layer = scenario.layers[0]
    kernel = torch.tensor(layer.params["kernel"])
    if layer.flip:
        kernel = torch.flip(kernel, dims=(2, 3))
    x = torch.tensor(scenario.input, requires_grad=True)
    bias = torch.tensor(layer.params["bias"]) if "bias" in layer.params else None
    out = F.conv2d(x, kernel, bias, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                   groups=layer.groups)
    return x, out


@pytest.mark.parametrize("case", list(GEOMETRY))
def test_full_convolution_view_agrees_with_autograd(case, torch):
    scenario = geometry_scenario(case)
    trace = run(scenario)
    x, out = torch_conv(torch, scenario)
    delta = torch.tensor(trace.value("c.delta"))
    out.backward(delta)
    expected = x.grad.numpy()
    cells = list(np.ndindex(*scenario.input.shape))
    for e, index in zip(explain_many(scenario, [("input.delta", i) for i in cells]), cells):
        assert e.full_conv is not None and e.full_conv.agree, (case, index)
        assert e.full_conv.total == pytest.approx(expected[index], abs=1e-12), (case, index)
        assert e.total == pytest.approx(expected[index], abs=1e-12), (case, index)


@pytest.mark.parametrize("case", list(GEOMETRY))
def test_unrolled_matrix_reproduces_forward_and_backward(case, torch):
    scenario = geometry_scenario(case)
    trace = run(scenario)
    u = unroll(scenario, trace, "c")
    x, out = torch_conv(torch, scenario)
    out.backward(torch.tensor(trace.value("c.delta")))
    torch_out, torch_grad = out.detach().numpy(), x.grad.numpy()
    for n, check in enumerate(u.checks):
        # M x + b against PyTorch's conv2d, and Mᵀ δ against its input gradient
        assert u.matrix @ scenario.input[n].reshape(-1) + u.bias == pytest.approx(torch_out[n].reshape(-1), abs=1e-12)
        assert u.matrix.T @ trace.value("c.delta")[n].reshape(-1) == pytest.approx(torch_grad[n].reshape(-1), abs=1e-12)
        # and what the renderer shows sets those products beside the engine's numbers
        assert check.out == pytest.approx(check.engine_out, abs=1e-12)
        assert check.x_delta == pytest.approx(check.engine_x_delta, abs=1e-12)
    # every nonzero entry is a kernel element, and every kernel element is shared
    kernel = trace.value("c.kernel")
    for k, (symbol, label, value) in enumerate(u.weights, 1):
        assert value == kernel.reshape(-1)[k - 1]
        assert set(u.matrix[u.symbols == k]) <= {value}


def test_unrolled_seed002_is_the_sources_matrix():
    scenario = load(SEED002)
    u = unroll(scenario, run(scenario), "c1")
    # o₁ = w₁i₁ + w₂i₂ + w₃i₄ + w₄i₅, o₂ = w₁i₂ + w₂i₃ + w₃i₅ + w₄i₆, ... (row by row)
    assert u.symbols.tolist() == [[1, 2, 0, 3, 4, 0, 0, 0, 0],
                                  [0, 1, 2, 0, 3, 4, 0, 0, 0],
                                  [0, 0, 0, 1, 2, 0, 3, 4, 0],
                                  [0, 0, 0, 0, 1, 2, 0, 3, 4]]
    assert [w[:2] for w in u.weights] == [("w₁", "c1.kernel[0,0]"), ("w₂", "c1.kernel[0,1]"),
                                         ("w₃", "c1.kernel[1,0]"), ("w₄", "c1.kernel[1,1]")]
    # the comment in the scenario works c1.delta and ∂C/∂w¹₁ by hand: c1.delta = [[−1, −0.5], [1, −2]]
    assert u.checks[0].delta.tolist() == [-1, -0.5, 1, -2]


def test_unrolled_reads_the_first_training_step_of_a_scenario_that_trains_several(tmp_path):
    # with `steps: 2` every name starts with step1. / step2.: the unrolled matrix is step 1's
    path = tmp_path / "two_steps.yaml"
    path.write_text(SEED002.read_text() + "\nlearning_rate: 0.1\nsteps: 2\n")
    scenario = load(path)
    trace = run(scenario)
    u = unroll(scenario, trace, "c1")
    assert u.weights[0][1] == "step1.c1.kernel[0,0]" and u.out_name == "step1.c1.out"
    assert u.checks and all(c.out_agree and c.x_delta_agree is not False for c in u.checks)
    result = CliRunner().invoke(main, ["explain", "--unrolled", str(path), "c1"])
    assert result.exit_code == 0, result.output
    assert "step1.c1.out = M · step1.input + step1.c1.bias" in result.output


def test_unrolled_refuses_other_layers():
    scenario = load(SEED001)
    with pytest.raises(ScenarioError, match="maxpool layer"):
        unroll(scenario, run(scenario), "p1")
    result = CliRunner().invoke(main, ["explain", "--unrolled", str(SEED001), "c11"])
    assert result.exit_code == 2 and "did you mean 'c1'?" in result.output


# --- on a terminal -----------------------------------------------------------------------------

def _text(renderable, width=100) -> str:
    console = Console(width=width, color_system=None, record=True, file=open("/dev/null", "w"))
    console.print(render(renderable, width) if not hasattr(renderable, "symbols") else render_unrolled(renderable, width))
    return console.export_text()


@pytest.mark.parametrize("target", ["c1.grad.kernel[0,1]", "input.delta[1,2]", "c1.delta[0,0]", "p1.out[0,0]",
                                    "f.delta[0]", "c1.out"])
def test_golden_seed001(target, golden):
    slug = re.sub(r"\W+", "_", target).strip("_")
    golden(f"explain_seed001_{slug}.txt", _text(explain(load(SEED001), target)))


def test_golden_unrolled_seed002(golden):
    scenario = load(SEED002)
    golden("explain_unrolled_seed002_c1.txt", _text(unroll(scenario, run(scenario), "c1")))


def test_cli_plain_when_piped_and_width(monkeypatch):
    runner = CliRunner()
    result = runner.invoke(main, ["explain", str(SEED001), "input.delta[1,2]", "--width", "60"])
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 60
    assert "✓ agree" in result.output
    monkeypatch.setenv("NO_COLOR", "1")
    result = runner.invoke(main, ["explain", "--unrolled", str(SEED002), "c1"], color=True)
    assert result.exit_code == 0 and "\x1b[" not in result.output and "w₁" in result.output


@pytest.mark.parametrize("width", [40, 72])
@pytest.mark.parametrize("target", ["input.delta[1,2]", "p1.out[0,1]", "f.delta[2]", "c1.grad.kernel[1,1]"])
def test_narrow_terminals_wrap_and_never_cut(target, width):
    from rich.cells import cell_len

    text = _text(explain(load(SEED001), target), width)
    assert "…" not in text
    assert max(cell_len(line) for line in text.splitlines()) <= width
    # every number of every term is still there
    for term in explain(load(SEED001), target).terms:
        for operand in term.operands:
            assert re.sub(r"\s", "", signed(operand.value))[:6] in re.sub(r"\s", "", text)


def test_cli_colour_only_on_a_terminal(monkeypatch):
    from bptrace import cli

    console = cli.make_console(width=80, force_plain=False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli.make_console(width=80, force_plain=False).no_color and not console.no_color


# --- review and QA findings ------------------------------------------------------------------

ONE_BY_ONE = """
input: [[1, 2], [3, 4]]
layers:
  - {type: conv, name: c1, kernel: [[0.5]]}
upstream: {layer: c1, delta: [[1, -2], [0.5, 3]]}
"""

# 6×6 input, 3×3 kernel, relu, avgpool, dense 3, cross-entropy: long numbers everywhere
SIX_BY_SIX = """
input: [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], [0.1, 0.3, 0.5, 0.7, 0.9, 0.2],
        [0.2, 0.4, 0.6, 0.8, 0.1, 0.3], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.3, 0.1, 0.4, 0.1, 0.5, 0.9]]
layers:
  - {type: conv, name: c1, kernel: [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6], [0.7, -0.8, 0.9]]}
  - {type: relu, name: r1}
  - {type: avgpool, name: p1, size: 2}
  - {type: flatten, name: f}
  - {type: dense, name: d, out: 3}
init: {scheme: glorot_uniform, seed: 0}
loss: {type: cross_entropy, target: 2}
"""

GROUPS = """
conventions: {index_base: 1}
input: [[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]],
        [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]]
layers:
  - {type: conv, name: c1, out_channels: 2, groups: 2, kernel: [[[[0.1, 0.2], [0.3, 0.4]]], [[[0.5, 0.6], [0.7, 0.8]]]]}
upstream:
  layer: c1
  delta: [[[1, -1, 2], [0, 1, 1], [2, 1, -1]], [[1, 2, 3], [-1, 0, 1], [1, 1, 1]]]
"""


@pytest.mark.parametrize("width", [100, 30])
def test_one_by_one_kernel_is_named_in_full(width):
    e = explain(loads(ONE_BY_ONE), "input.delta[0,1]")
    assert e.full_conv.kernel == "c1.kernel" and e.full_conv.channels[0].kernel_indices == [[()]]
    text = _text(e, width)
    assert "c1.kernel turned 180°" in re.sub(r"\s+", " ", text)
    assert "c1.kerne…" not in text and "0.5 l" not in text and "…" not in text


def test_dense_row_with_one_input_feature_or_one_output_unit():
    one_input = loads("""
input: [[0.5]]
layers: [{type: dense, name: h, weights: [[0.3], [0.7]], bias: [0, 0]}]
upstream: {layer: h, delta: [0.25, -0.15]}
""")
    e = explain(one_input, "input.delta")
    assert (e.dense_row.input, e.dense_row.outputs) == (0, [0, 1])
    assert "row 0 of h.weightsᵀ" in _text(e)
    one_output = loads("""
conventions: {index_base: 1}
input: [[0.5, 0.2]]
layers: [{type: dense, name: h, weights: [[0.3, 0.7]], bias: [0]}]
upstream: {layer: h, delta: [0.25]}
""")
    e = explain(one_output, "input.delta[2]")
    assert (e.dense_row.input, e.dense_row.outputs) == (2, [1])
    text = _text(e)
    header = text.splitlines()[text.splitlines().index(next(l for l in text.splitlines() if "row 2 of h.weightsᵀ" in l
                                                             and "0.7" in l)) - 1]
    assert header.split() == ["[1]"]


def test_unrolled_checks_are_data():
    scenario = loads(GROUPS)
    u = unroll(scenario, run(scenario), "c1")
    assert u.max_row_weights == 4            # a 2×2 kernel over one input map (groups: 2)
    for check in u.checks:
        assert check.out_agree and check.x_delta_agree
        assert check.out_worst == pytest.approx(0, abs=1e-12) and check.x_delta_worst == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("width", [80, 120])
def test_term_table_fits_and_grids_align(width):
    from rich.cells import cell_len

    e = explain(loads(SIX_BY_SIX), "c1.grad.kernel[0,0]")
    text = _text(e, width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    # a table, one line per term (not the rows spelt out as wrapped prose)
    rows = [line for line in text.splitlines() if re.match(r"\s*\d+\s+\[\d,\d\]", line)]
    assert len(rows) == len(e.terms) == 16 and "c1.delta: [" not in text
    e = explain(loads(SIX_BY_SIX), "input.delta[2,2]")
    text = _text(e, width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    # the caption of the turned kernel on one line, above its grid
    assert any(line.startswith("c1.kernel turned 180°") for line in text.splitlines())
    # the padded delta: every line of a block of columns is as wide as its header
    from bptrace.render.explain_text import _padded
    fc = e.full_conv
    lines = [line.plain for line in _padded(fc.padded[0], fc.channels[0], 0, width) if not line.plain.startswith("columns")]
    assert len({cell_len(line) for line in lines[:10]}) == 1


@pytest.mark.parametrize("width", [120, 80])
def test_unrolled_column_headers_are_never_cut(width):
    from rich.cells import cell_len

    scenario = loads(GROUPS)
    u = unroll(scenario, run(scenario), "c1")
    text = _text(u, width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    assert not re.search(r"\[[\d,]*…", text)
    for label in u.columns:
        assert label[label.index("["):] in text


def test_softmax_factor_is_indexed_after_the_whole_softmax():
    e = explain(loads(SIX_BY_SIX), "d.delta[2]")
    assert e.terms[0].operands[0].label == "softmax(d.out)[2]"
    assert "softmax(d.out[2])" not in _text(e)


WIDE_CONV = """
input: {random: uniform, shape: [40, 40], seed: 0}
init: {seed: 0}
layers:
  - {type: conv, name: c1, out_channels: 2, size: 3}
  - {type: flatten}
  - {type: dense, out: 1}
loss: {type: mse, target: 0}
"""


def test_unrolled_holds_the_weights_not_a_dense_matrix():
    # M is 2,888×1,600: 74 MB as two dense matrices, for 25,992 weights
    import tracemalloc

    scenario = loads(WIDE_CONV)
    trace = run(scenario)
    tracemalloc.start()
    try:
        u = unroll(scenario, trace, "c1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak
    assert u.shape == (2888, 1600) and u.nonzero == 2 * 38 * 38 * 9
    assert all(check.out_agree and check.x_delta_agree for check in u.checks)
    text = _text(u)
    assert "M is 2888×1600" in text and "too large to print" in text


def test_unrolling_a_layer_too_large_is_refused_before_the_trace_runs(monkeypatch, tmp_path):
    from bptrace import cli, unrolled

    path = tmp_path / "wide.yaml"
    path.write_text(WIDE_CONV.lstrip())
    monkeypatch.setattr(unrolled, "MAX_UNROLLED_WEIGHTS", 10_000)
    monkeypatch.setattr(cli, "trace_scenario", lambda *a, **k: pytest.fail("the trace ran"))
    result = CliRunner().invoke(main, ["explain", "--unrolled", str(path), "c1"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}:4:5: layers[0]: c1 unrolled is a 2,888×1,600 matrix "
                                    "with up to 25,992 weights, more than the 10,000 weights")
    assert "bptrace explain FILE 'c1.out[0,0,0]'" in result.output


def test_explain_digits_shows_that_many_significant_digits():
    """`explain --digits N`, as `run --digits N`: only what is shown is rounded (the sum,
    its terms and the total are the same numbers, written with N significant digits)."""
    target = "c1.grad.kernel[0,1]"     # 0.0941186865 = 0.068628·0.84 + 0.0364182·0.22 + ...
    full = CliRunner().invoke(main, ["explain", str(SEED001), target])
    short = CliRunner().invoke(main, ["explain", str(SEED001), target, "--digits", "3"])
    assert full.exit_code == 0 and short.exit_code == 0, short.output
    assert "0.09411868650" not in full.output and "0.0941186865" in full.output
    assert "0.0941186865" not in short.output and "= 0.0941" in short.output
    assert "0.0686·0.84" in short.output and "0.0364·0.22" in short.output     # the written-out sum too
    whole = CliRunner().invoke(main, ["explain", str(SEED001), "c1.grad.kernel", "--digits", "2"])
    assert whole.exit_code == 0 and "0.094" in whole.output and "0.0941" not in whole.output
    unrolled = CliRunner().invoke(main, ["explain", "--unrolled", str(SEED002), "c1", "--digits", "2"])
    assert unrolled.exit_code == 0 and not re.search(r"\d\.\d{5}", unrolled.output.replace("e-", ""))
    bad = CliRunner().invoke(main, ["explain", str(SEED001), target, "--digits", "0"])
    assert bad.exit_code == 2
