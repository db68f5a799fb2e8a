"""The engine against numbers printed by the sources (BRIEF section 4), and the workings of
the trace: names and order, rounding, `given`, index base, term-by-term expansions, ties.

Printed numbers are compared to half a unit in their last printed digit: that is all a
printed number says.
"""
from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import bptrace
from bptrace.render.common import element
from bptrace.scenario import resolve

ROOT = Path(__file__).resolve().parent.parent
SEED001 = (ROOT / "scenarios" / "seed001.yaml").read_text(encoding="utf-8")
SEED001_TRUNCATED = SEED001 + """
rounding: {decimals: 4, mode: truncate, apply: [p1.delta]}
"""


def printed(text: str):
    """A number as a source printed it: pytest.approx within half its last digit."""
    exponent = Decimal(text).as_tuple().exponent
    return pytest.approx(float(text), abs=0.5 * 10.0 ** exponent)


def printed_all(texts):
    return [printed(t) for t in texts]


@pytest.fixture(scope="module")
def seed001():
    scenario = bptrace.loads(SEED001)
    return scenario, bptrace.run(scenario)


# --- BRIEF section 4 ---------------------------------------------------------------------

def test_seed001_dense_and_pool_deltas(seed001):
    _, trace = seed001
    assert trace["f.delta"].shown.tolist() == printed_all(["0.1495", "0.28", "0.2055", "-0.2755"])
    p1 = trace["p1.delta"].shown
    assert p1[0].tolist() == printed_all(["0.0364182", "0.068628"])
    assert p1[1].tolist() == printed_all(["0.04675125", "-0.06818625"])


def test_seed001_upsampled_delta_is_zero_except_at_the_maxima(seed001):
    _, trace = seed001
    c1 = trace["c1.delta"].shown
    assert c1.shape == (4, 4)
    nonzero = {(0, 2): "0.068628", (1, 1): "0.0364182", (2, 1): "0.04675125", (3, 3): "-0.06818625"}
    for i, j in np.ndindex(4, 4):
        if (i, j) in nonzero:
            assert c1[i, j] == printed(nonzero[(i, j)]), (i, j)
        else:
            assert c1[i, j] == 0, (i, j)


def test_seed001_kernel_and_bias_gradients(seed001):
    _, trace = seed001
    kernel = trace["c1.grad.kernel"].shown
    assert kernel.shape == (2, 2)
    assert kernel[0].tolist() == printed_all(["0.0445918", "0.09411869"])
    assert kernel[1].tolist() == printed_all(["0.01125765", "0.06831239"])
    assert float(trace["c1.grad.bias"].shown) == printed("0.0836112")


def test_seed001_error_for_a_conv_layer_before(seed001):
    _, trace = seed001
    x_delta = trace["input.delta"].shown
    assert x_delta.shape == (5, 5)
    assert x_delta[0, 2] == printed("-0.00892164")
    assert x_delta[4, 4] == printed("-0.04091175")


def test_seed001_truncated_deltas_give_the_sources_answer():
    scenario = bptrace.loads(SEED001_TRUNCATED)
    trace = bptrace.run(scenario)
    p1 = trace["p1.delta"]
    assert p1.rounded == "4 decimals, truncate"
    # truncation cuts toward zero: −0.06818625 → −0.0681, not −0.0682
    assert p1.shown.tolist() == [[0.0364, 0.0686], [0.0467, -0.0681]]
    assert p1.computed.reshape(2, 2).tolist() == [printed_all(["0.0364182", "0.068628"]),
                                                 printed_all(["0.04675125", "-0.06818625"])]
    kernel = trace["c1.grad.kernel"].shown
    assert kernel.tolist() == [printed_all(["0.044606", "0.094061"]), printed_all(["0.011262", "0.068288"])]
    # only p1.delta was rounded; the steps before it are the unrounded ones
    assert [s.name for s in trace.steps if s.rounded] == ["p1.delta"]


# --- names, shapes, order --------------------------------------------------------------

NAMES_UPSTREAM_MIDDLE = """
input: [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]
layers:
  - {type: conv, name: c1, kernel: [[1, -1], [0.5, 2]]}
  - {type: relu, name: r}
  - {type: flatten, name: f}
  - {type: dense, name: d, weights: [[1, 2, 3, 4]]}
upstream: {layer: r, delta: [[1, 0], [0, 1]]}
learning_rate: 0.5
"""


@pytest.mark.parametrize("text", [SEED001, SEED001_TRUNCATED, NAMES_UPSTREAM_MIDDLE],
                         ids=["seed001", "seed001-truncated", "upstream-middle"])
def test_trace_names_are_the_scenario_shapes_in_order(text):
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    assert trace.names() == list(scenario.shapes)
    for step in trace.steps:
        assert step.shape == tuple(scenario.shapes[step.name]), step.name


def test_names_follow_the_brief_for_an_upstream_in_the_middle():
    trace = bptrace.run(bptrace.loads(NAMES_UPSTREAM_MIDDLE))
    assert trace.names() == [
        "input", "c1.kernel", "c1.bias", "c1.out", "r.out", "f.out", "d.weights", "d.bias", "d.out",
        "r.delta", "c1.delta", "c1.grad.kernel", "c1.grad.bias", "input.delta",
        "c1.new.kernel", "c1.new.bias"]
    assert trace.loss is None


def test_padding_a_1d_signal_pads_its_one_axis():
    scenario = bptrace.loads("""
input: [0.1, 0.5, -0.3, 0.8, 0.2]
layers:
  - {type: conv, name: c, kernel: [0.5, -1.0, 0.25], padding: 1}
  - {type: maxpool, name: p, size: 3, stride: 1, padding: 1}
upstream: {delta: [1, 2, 3, 4, 5]}
""")
    assert scenario.shapes["c.out"] == (1, 1, 1, 5) and scenario.shapes["p.out"] == (1, 1, 1, 5)
    out = bptrace.run(scenario)["c.out"].shown
    assert out[0] == pytest.approx(-1.0 * 0.1 + 0.25 * 0.5) and out[4] == pytest.approx(0.5 * 0.8 - 1.0 * 0.2)


# --- rounding ----------------------------------------------------------------------------

ROUNDING_INPUT = [0.29, -0.29, 0.125, -0.125, 0.135, -0.135, 0.145, 1.005, -0.999, 2.0]
ROUNDED = {   # two decimals, as by hand on the decimal digits written
    "half_up":   [0.29, -0.29, 0.13, -0.13, 0.14, -0.14, 0.15, 1.01, -1.0, 2.0],
    "half_even": [0.29, -0.29, 0.12, -0.12, 0.14, -0.14, 0.14, 1.0, -1.0, 2.0],
    "truncate":  [0.29, -0.29, 0.12, -0.12, 0.13, -0.13, 0.14, 1.0, -0.99, 2.0],
}


@pytest.mark.parametrize("mode", list(ROUNDED))
def test_rounding_modes(mode):
    text = f"""
input: {ROUNDING_INPUT}
layers:
  - {{type: identity, name: id}}
upstream: {{delta: {[1.0] * len(ROUNDING_INPUT)}}}
rounding: {{decimals: 2, mode: {mode}, apply: [id.out]}}
"""
    trace = bptrace.run(bptrace.loads(text))
    step = trace["id.out"]
    assert step.shown.tolist() == ROUNDED[mode]
    assert step.computed.reshape(-1).tolist() == ROUNDING_INPUT
    assert step.rounded == f"2 decimals, {mode.replace('_', ' ')}"
    assert trace["input"].rounded is None


def test_rounding_forward_rounds_forward_steps_and_later_steps_use_them():
    text = """
input: [[0.123456, 0.654321], [0.5, -0.25]]
layers:
  - {type: conv, name: c, kernel: [[0.111111, 0.222222], [0.333333, 0.444444]]}
  - {type: sigmoid, name: s}
loss: {type: half_sse, target: 0.5}
rounding: {decimals: 3, mode: half_up, apply: forward}
"""
    trace = bptrace.run(bptrace.loads(text))
    assert {s.name for s in trace.steps if s.rounded} == {"c.out", "s.out"}
    c_out = 0.111111 * 0.123456 + 0.222222 * 0.654321 + 0.333333 * 0.5 + 0.444444 * -0.25
    assert trace["c.out"].values.item() == round(c_out, 3)
    s_out = round(1 / (1 + math.exp(-round(c_out, 3))), 3)
    assert trace["s.out"].values.item() == s_out
    assert trace["s.delta"].values.item() == pytest.approx(s_out - 0.5, abs=1e-15)
    assert trace["c.delta"].values.item() == pytest.approx((s_out - 0.5) * s_out * (1 - s_out), abs=1e-15)


# --- given ---------------------------------------------------------------------------------

def test_given_whole_step_keeps_the_computed_values(seed001):
    _, trace = seed001
    step = trace["s1.out"]
    assert step.shown.tolist() == [[0.58, 0.57], [0.65, 0.55]]
    assert step.given.all()
    pooled = trace["p1.out"].values
    assert np.allclose(step.computed, 1 / (1 + np.exp(-pooled)), rtol=0, atol=1e-15)
    assert not np.allclose(step.computed, step.values, atol=1e-3)
    # the sigmoid's delta is written through the given outputs: 0.1495 · 0.58 · (1 − 0.58)
    assert trace["p1.delta"].shown[0, 0] == pytest.approx(0.1495 * 0.58 * 0.42, abs=1e-15)


# a 3x3 input, one 2x2 conv, indices from 1
BASE_1_NET = """
conventions: {index_base: 1}
input: [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]
layers:
  - {type: conv, name: c, kernel: [[1, -1], [0.5, 2]]}
loss: {type: sse, target: [[0, 0], [0, 0]]}
"""


def test_given_single_elements_in_index_base_1():
    text = BASE_1_NET + """
given:
  c.out[2,1]: 10
  c.delta[1,2]: -3
"""
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    out = trace["c.out"]
    computed = [[0.1 - 0.2 + 0.2 + 1.0, 0.2 - 0.3 + 0.25 + 1.2], [0.4 - 0.5 + 0.35 + 1.6, 0.5 - 0.6 + 0.4 + 1.8]]
    assert out.computed.reshape(2, 2) == pytest.approx(np.array(computed), abs=1e-15)
    assert out.given.reshape(2, 2).tolist() == [[False, False], [True, False]]
    assert out.shown[1, 0] == 10
    assert out.shown[0, 0] == out.computed.reshape(2, 2)[0, 0]
    delta = trace["c.delta"]
    assert delta.given.reshape(2, 2).tolist() == [[False, True], [False, False]]
    assert delta.shown[0, 1] == -3
    assert delta.computed.reshape(2, 2)[1, 0] == pytest.approx(2 * 10)   # sse: 2·(out − 0), the pinned out
    # the kernel gradient reads the pinned delta
    d = delta.shown
    expected = d[0, 0] * 0.1 + d[0, 1] * 0.2 + d[1, 0] * 0.4 + d[1, 1] * 0.5
    assert trace["c.grad.kernel"].shown[0, 0] == pytest.approx(expected)


def test_index_base_1_labels_and_keys():
    text = BASE_1_NET + """
expected:
  c.grad.kernel[2,1]: 0.5
"""
    scenario = bptrace.loads(text)
    name, index = resolve(scenario, scenario.document, ("expected", "c.grad.kernel[2,1]"), "c.grad.kernel[2,1]")
    assert (name, index) == ("c.grad.kernel", (0, 0, 1, 0))
    assert element(name, scenario.shapes[name], index, 1) == "c.grad.kernel[2,1]"
    assert element("c.out", scenario.shapes["c.out"], (0, 0, 0, 0), 1) == "c.out[1,1]"
    assert element("c.out", scenario.shapes["c.out"], (0, 0, 0, 0), 0) == "c.out[0,0]"
    with pytest.raises(bptrace.ScenarioError):
        bptrace.loads(text.replace("[2,1]", "[0,1]"))        # 0 is out of range with base 1
    assert bptrace.run(scenario).conventions["index_base"] == 1


# --- term-by-term expansions ---------------------------------------------------------------

APPLY = {"σ": lambda z, layer: 1 / (1 + math.exp(-z)), "tanh": lambda z, layer: math.tanh(z),
         "relu": lambda z, layer: max(z, 0.0), "identity": lambda z, layer: z,
         "leaky_relu": lambda z, layer: z if z > 0 else layer.negative_slope * z}

EXPANDED = """
input: [[0.51, -0.90, 0.88, 0.84], [0.40, 0.62, -0.22, 0.59], [0.11, 0.20, 0.74, -0.33], [0.47, 0.01, 0.85, 0.70]]
layers:
  - {type: conv, name: c, kernel: [[0.3, -0.2], [0.1, 0.4]], padding: 1, stride: 2, bias: 0.1}
  - {type: leaky_relu, name: lr, slope: 0.1}
  - {type: maxpool, name: mp, size: 2, stride: 1}
  - {type: avgpool, name: ap, size: 1}
  - {type: tanh, name: t}
  - {type: flatten, name: f}
  - {type: dense, name: d, weights: [[0.5, -0.5, 1, 2], [1, 1, -1, 0.5], [0.2, 0.3, 0.4, 0.5]]}
  - {type: sigmoid, name: s}
  - {type: softmax, name: sm}
loss: {type: cross_entropy, target: 2}
learning_rate: 0.1
"""


@pytest.mark.parametrize("text", [SEED001, SEED001_TRUNCATED, EXPANDED], ids=["seed001", "seed001-truncated", "layers"])
def test_expansions_exist_for_small_steps_and_add_up(text):
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    layers = {layer.name: layer for layer in scenario.layers}
    given_start = f"{scenario.upstream.layer}.delta" if scenario.upstream else None
    checked = 0
    for step in trace.steps:
        if step.phase in ("input", "parameter") or step.name == given_start:
            continue
        assert step.values.size <= 64
        assert step.expansions, f"{step.name} has no expansion"
        computed = step.computed if step.computed is not None else step.values
        for idx in np.ndindex(*step.shape):
            expansion = step.expansions.get(idx)
            if expansion is None:          # nothing flowed here (a max-pool loser, an unread cell)
                assert computed[idx] == 0, (step.name, idx)
                continue
            for term in expansion.terms:
                for factor in term:
                    if factor.index is not None and factor.name in trace:
                        assert factor.value == trace.value(factor.name)[factor.index], (step.name, idx, factor)
            if expansion.kind == "sum":
                total = sum(math.prod(f.value for f in term) for term in expansion.terms)
                assert total == pytest.approx(computed[idx], rel=1e-12, abs=1e-15), (step.name, idx)
            elif expansion.kind == "max":
                candidates = [term[0].value for term in expansion.terms]
                assert candidates[expansion.winner] == computed[idx] == max(candidates)
                assert expansion.winner == candidates.index(max(candidates))      # the first maximum
                assert expansion.tie == (candidates.count(max(candidates)) > 1)
            else:
                assert expansion.kind == "apply" and len(expansion.terms) == 1
                z = expansion.terms[0][0].value
                if expansion.fn in APPLY:
                    assert APPLY[expansion.fn](z, layers.get(step.layer)) == pytest.approx(computed[idx], abs=1e-15)
                else:
                    assert expansion.fn == "softmax"
            checked += 1
    assert checked > 0


# --- max-pool ties -----------------------------------------------------------------------

def test_maxpool_tie_goes_to_the_first_maximum_and_is_noted():
    text = """
input: [[0.5, 0.2, 0.9, 0.9], [0.5, 0.1, 0.3, 0.9], [0.0, 0.4, 0.8, 0.1], [0.4, 0.4, 0.2, 0.7]]
layers:
  - {type: maxpool, name: p, size: 2}
upstream: {delta: [[1, 2], [3, 4]]}
"""
    trace = bptrace.run(bptrace.loads(text))
    notes = trace["p.out"].notes
    # windows (0,0): 0.5 twice; (0,1): 0.9 three times; (1,0): 0.4 twice; (1,1): no tie
    assert len(notes) == 3 and all("tie" in note for note in notes)
    assert any("p.out[0,0]" in note for note in notes) and not any("p.out[1,1]" in note for note in notes)
    ties = {idx[2:]: e.tie for idx, e in trace["p.out"].expansions.items()}
    assert ties == {(0, 0): True, (0, 1): True, (1, 0): True, (1, 1): False}
    assert trace["input.delta"].shown.tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 4, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("text", [
    "input: [1e300]\nlayers:\n  - {type: dense, name: h, weights: [[1]]}\nloss: {type: half_sse, target: [0]}\n",
    "input: [1e200, -1e200]\nlayers:\n  - {type: softmax}\nloss: {type: mse, target: [1e308, -1e308]}\n"
    "rounding: {decimals: 3}\n",
])
def test_an_overflow_is_one_located_error_without_numpy_warnings(text):
    # the engine names the first value that is not finite; numpy's own RuntimeWarnings on the
    # way there (printed on stderr by the command line) said nothing more
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(bptrace.ScenarioError, match="is inf"):
            bptrace.run(bptrace.loads(text))
