"""Float noise: rounding by hand rounds the value on paper, and the noise floors that decide
relu's side and max-pool ties are each element's own.

Oracles: exact Fraction arithmetic on the written decimals, and PyTorch float64.  The
rounding sweep draws sums of 2-4 products of 2-decimal numbers; BPTRACE_LONG=1 draws
100,000 values per rounding (5,000 by default).
"""
from __future__ import annotations

import json
import math
import os
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

import bptrace
from bptrace.cli import main

LONG = os.environ.get("BPTRACE_LONG") == "1"


def dense(inputs, weights, extra=""):
    return bptrace.loads(f"input: {json.dumps(inputs)}\n"
                         f"layers:\n  - {{name: d, type: dense, weights: {json.dumps(weights)}, bias: 0}}\n"
                         f"loss: {{type: half_sse, target: {json.dumps([[0] * len(weights)] * len(inputs))}}}\n"
                         + extra)


# --- rounding -----------------------------------------------------------------------------

def test_truncation_keeps_a_sum_that_is_exact_on_paper():
    # 0.84·0.48 − 0.31·(−0.29) + 0.38·(−0.51) is 0.2993 exactly; the float is 0.29929999999999996
    scenario = dense([[0.48, -0.29, -0.51]], [[0.84, -0.31, 0.38]], "rounding: {decimals: 4, mode: truncate}\n")
    step = bptrace.run(scenario)["d.out"]
    assert step.computed[0, 0] < 0.2993
    assert step.values[0, 0] == 0.2993


def test_half_up_rounds_a_paper_half_away_from_zero():
    # 0.97·0.58 + 0.84·(−0.89) is −0.185 exactly; the float is −0.18499999999999994
    scenario = dense([[0.58, -0.89]], [[0.97, 0.84]], "rounding: {decimals: 2, mode: half_up}\n")
    step = bptrace.run(scenario)["d.out"]
    assert step.computed[0, 0] > -0.185
    assert step.values[0, 0] == -0.19


def test_check_round_truncate_accepts_the_paper_value(tmp_path):
    path = tmp_path / "sheet.yaml"
    path.write_text("input: [0.48, -0.29, -0.51]\n"
                    "layers:\n  - {name: d, type: dense, weights: [[0.84, -0.31, 0.38]], bias: 0}\n"
                    "loss: {type: half_sse, target: [0]}\n"
                    "expected: {d.out: 0.2993}\n")
    result = CliRunner().invoke(main, ["check", str(path), "--round", "4", "--mode", "truncate",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)["files"][0]["answers"]
    assert [(a["key"], a["bptrace"]) for a in answers] == [("d.out", 0.2993)]


MODES = {"truncate": ROUND_DOWN, "half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
ROUNDINGS = [(4, "truncate"), (3, "truncate"), (3, "half_up"), (2, "half_up"), (3, "half_even")]


def exact_rounding(value: Fraction, decimals: int, mode: str) -> float:
    with localcontext() as context:
        context.prec = 60
        exact = Decimal(value.numerator) / Decimal(value.denominator)     # a 4-decimal number: exact
        return float(exact.quantize(Decimal(1).scaleb(-decimals), rounding=MODES[mode]))


@pytest.mark.parametrize("decimals, mode", ROUNDINGS)
def test_rounding_sums_of_products_never_rounds_noise(decimals, mode):
    """Every sum of 2-4 products of 2-decimal numbers rounds as its exact value does.
    Measured with BPTRACE_LONG=1: 0 wrong of 100,000 for each rounding (the old rounding of
    the float's own digits: 25% wrong truncated to 4 decimals)."""
    rng = np.random.default_rng(decimals * 10 + len(mode))
    count, batch, wrong, checked = (100_000 if LONG else 5_000), 500, [], 0
    while checked < count:
        k = int(rng.integers(2, 5))
        x = rng.integers(-99, 100, size=(batch, k))
        w = rng.integers(-99, 100, size=(1, k))
        text_x, text_w = (x / 100).tolist(), (w / 100).tolist()
        scenario = dense(text_x, text_w, f"rounding: {{decimals: {decimals}, mode: {mode}, apply: [d.out]}}\n")
        got = bptrace.run(scenario, terms=False)["d.out"].values[:, 0]
        for n in range(batch):
            exact = sum(Fraction(int(x[n, i]) * int(w[0, i]), 10_000) for i in range(k))
            if got[n] != exact_rounding(exact, decimals, mode):
                wrong.append((text_x[n], text_w[0], got[n]))
        checked += batch
    assert not wrong, f"{len(wrong)} of {checked} rounded wrong, e.g. {wrong[:3]}"


def test_rounding_is_exact_for_values_as_written_and_noisy_ones_alike():
    from bptrace.rounding import round_number
    assert round_number(0.29, 2, "truncate") == 0.29                 # written: no noise beyond binary
    assert round_number(0.29, 16, "truncate") == 0.29
    assert round_number(-0.125, 2, "half_up") == -0.13
    assert round_number(0.29929999999999996, 4, "truncate", 1e-16) == 0.2993
    # a value whose noise is wider than the rounding's last digit is rounded as it is
    assert round_number(0.29929999999999996, 4, "truncate", 1e-3) == 0.2992


def test_rounding_deltas_and_gradients_uses_their_own_noise():
    # d.out = 0.2993 on paper (not rounded here), delta = 0.2993 − 0.1 = 0.1993, and
    # grad.weights = 0.1993 · input = [0.095664, −0.057797, −0.101643]: all exact in 6 decimals
    text = ("input: [0.48, -0.29, -0.51]\n"
            "layers:\n  - {name: d, type: dense, weights: [[0.84, -0.31, 0.38]], bias: 0}\n"
            "loss: {type: half_sse, target: [0.1]}\n"
            "rounding: {decimals: 6, mode: truncate, apply: [d.delta, d.grad.weights, d.grad.bias]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["d.delta"].computed[0, 0] < 0.1993
    assert trace["d.delta"].values.tolist() == [[0.1993]]
    assert trace["d.grad.weights"].values.tolist() == [[0.095664, -0.057797, -0.101643]]
    assert trace["d.grad.bias"].values.tolist() == [0.1993]


# --- noise floors per element ------------------------------------------------------------------

def test_a_small_relu_input_is_not_noise_because_another_sample_is_large():
    text = ("input: [[5e-7], [1e6]]\nlayers:\n  - {name: r, type: relu}\n"
            "loss: {type: half_sse, target: [[0], [0]]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["r.out"].values.tolist() == [[5e-7], [1e6]]
    assert trace["input.delta"].values.tolist() == [[5e-7], [1e6]]


def test_a_max_pool_window_of_written_numbers_has_no_noise_tie():
    text = ("input: [[-1e6, 1e-7], [3e-7, 2e-7]]\nlayers:\n  - {name: p, type: maxpool, size: 2}\n"
            "loss: {type: half_sse, target: [0]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["p.out"].values.reshape(-1).tolist() == [3e-7]
    assert not trace["p.out"].notes
    assert trace["input.delta"].values.reshape(2, 2).tolist() == [[0, 0], [3e-7, 0]]


def test_a_computed_value_is_noise_only_against_its_own_terms():
    # sample 0: 0.1·0.7 + 0.2·(−0.2) − 0.3·0.1 = 0 on paper (2.8e-17 in floats): relu's flat side;
    # sample 1 holds 1e6 and sample 2 a genuine 1e-9: neither changes sample 0, nor is 1e-9 noise
    text = ("input: [[0.7, -0.2, 0.1], [1e6, 0, 0], [1e-8, 0, 0]]\nlayers:\n"
            "  - {type: dense, name: d, weights: [[0.1, 0.2, -0.3]]}\n  - {type: relu, name: r}\n"
            "loss: {type: half_sse, target: [[0], [0], [0]]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["d.out"].values[0, 0] != 0
    assert trace["r.out"].values[:, 0].tolist() == [0, 1e5, 1e-9]
    assert trace["d.delta"].values[:, 0].tolist() == [0, 1e5, 1e-9]


# --- stable cross-entropy ------------------------------------------------------------------------

def ce_scenario(logits, target):
    return bptrace.loads(f"input: {json.dumps(logits)}\nlayers:\n  - {{name: i, type: identity}}\n"
                         f"loss: {{type: cross_entropy, target: {json.dumps(target)}}}\n")


@pytest.mark.parametrize("logits", [[1e17, 1e17], [1e10, 1e10 + 0.5], [1e10, -1e10], [1e308, -1e308],
                                    [1e308, 1e308], [0.3, -1e17], [1e17, 1e17 + 64]])
def test_cross_entropy_matches_torch_for_large_logits(torch, logits):
    import torch.nn.functional as F
    trace = bptrace.run(ce_scenario([logits], [0]))
    z = torch.tensor([logits], dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(z, torch.tensor([0]))
    loss.backward()
    assert trace.loss == pytest.approx(loss.item(), rel=1e-15, abs=0)
    assert np.allclose(trace["i.delta"].values, z.grad.numpy(), rtol=1e-15, atol=0)


def test_cross_entropy_at_1e17_is_log_2():
    trace = bptrace.run(ce_scenario([[1e17, 1e17], [1e17, 1e17]], [0, 1]))
    assert trace.loss == 0.6931471805599453
    assert trace["i.delta"].values.tolist() == [[-0.25, 0.25], [0.25, -0.25]]


def test_softmax_layer_and_bce_match_torch_for_large_inputs(torch):
    import torch.nn.functional as F
    for logits in ([1e17, 1e17], [1e308, -1e308], [1e10, 1e10 + 0.5]):
        scenario = bptrace.loads(f"input: {json.dumps([logits])}\nlayers:\n  - {{name: s, type: softmax}}\n"
                                 "loss: {type: half_sse, target: [[0.25, 0.75]]}\n")
        trace = bptrace.run(scenario)
        z = torch.tensor([logits], dtype=torch.float64, requires_grad=True)
        out = F.softmax(z, dim=1)
        (0.5 * ((out - torch.tensor([[0.25, 0.75]])) ** 2).sum()).backward()
        assert np.allclose(trace["s.out"].values, out.detach().numpy(), rtol=1e-15, atol=0)
        assert np.allclose(trace["input.delta"].values, z.grad.numpy(), rtol=1e-14, atol=1e-300)
    # (PyTorch clamps ŷ(1 − ŷ) at 1e-12 in BCE's backward, so past |z| ≈ 27 it is not the derivative)
    for z0 in (20.0, -20.0, 1e-10):
        scenario = bptrace.loads(f"input: [[{z0}]]\nlayers:\n  - {{name: s, type: sigmoid}}\n"
                                 "loss: {type: bce, target: [[0.3]]}\n")
        trace = bptrace.run(scenario)
        z = torch.tensor([[z0]], dtype=torch.float64, requires_grad=True)
        loss = F.binary_cross_entropy(torch.sigmoid(z), torch.tensor([[0.3]]))
        loss.backward()
        assert trace.loss == pytest.approx(loss.item(), rel=1e-13)
        assert np.allclose(trace["input.delta"].values, z.grad.numpy(), rtol=1e-9, atol=0)


def test_a_subnormal_softmax_output_is_not_noise():
    # softmax(0, −740) = (1, 4.2e-322): exact to the last bit that underflow leaves, so
    # leaky_relu is on its sloped-1 side, as in PyTorch (found by the differential test)
    text = ("input: [[[[-0.0]], [[-740.0]]]]\nlayers:\n  - {name: s, type: softmax}\n"
            "  - {name: r, type: leaky_relu, slope: 0.3}\nloss: {type: half_sse, target: [[[[0]], [[-1]]]]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert 0 < trace["s.out"].values[0, 1, 0, 0] < 1e-300
    assert trace["s.delta"].values.reshape(-1).tolist() == [1.0, 1.0]


# --- the layers of issue 10 -----------------------------------------------------------------------

def test_a_transposed_convs_sum_exact_on_paper_truncates_to_its_paper_value():
    # t.out[2] = 0.48·0.84 + (−0.29)·(−0.31) + (−0.51)·0.38 = 0.2993 on paper, added as the
    # scatter adds it (one input cell after another), just below 0.2993 in floats
    text = ("input: [0.48, -0.29, -0.51]\n"
            "layers:\n  - {name: t, type: conv_transpose, kernel: [0.38, -0.31, 0.84], bias: false}\n"
            "upstream: {delta: [1, 1, 1, 1, 1]}\n"
            "rounding: {decimals: 4, mode: truncate, apply: [t.out]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["t.out"].computed.reshape(-1)[2] < 0.2993
    assert trace["t.out"].values.reshape(-1)[2] == 0.2993


def test_values_equal_but_for_float_noise_are_a_global_max_pool_tie():
    # c.out = [0.3, 0.1, 0.1 + 0.2]: on paper the first and last are equal, so the first wins
    trace = bptrace.run(bptrace.loads("""
input: [0.3, 0.0, 0.1, 0.2]
layers:
  - {type: conv, name: c, kernel: [1, 1]}
  - {type: global_maxpool, name: g}
upstream: {delta: [1]}
"""))
    assert trace["c.delta"].shown.tolist() == [1, 0, 0]
    assert any("tie" in note for note in trace["g.out"].notes)


def test_a_written_small_number_survives_large_terms_that_cancel(torch):
    # 1·1e6 − 1·1e6 + 1·1e-9 is 1e-9 on paper and in floats (PyTorch: relu 1e-9, delta 1e-9);
    # its noise bound (n+3)·eps·Σ|terms| is larger than it, so the exact value decides
    text = ("input: [1000000, 1000000, 0.000000001]\nlayers:\n"
            "  - {type: dense, name: d, weights: [[1, -1, 1]]}\n  - {type: relu, name: r}\n"
            "loss: {type: half_sse, target: [0]}\n")
    trace = bptrace.run(bptrace.loads(text))
    x = torch.tensor([1e6, 1e6, 1e-9], dtype=torch.float64)
    w = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    out = torch.relu(w @ x)
    (0.5 * out.pow(2).sum()).backward()
    assert trace["r.out"].values.reshape(-1).tolist() == out.tolist()
    assert trace["d.grad.weights"].values.reshape(-1).tolist() == w.grad.reshape(-1).tolist()
    assert "decided on its exact value" in trace["r.out"].notes[-1]


def test_a_relu_input_that_is_zero_on_paper_takes_the_flat_side_by_its_exact_value():
    # 0.1 + 0.2 − 0.3 is 0 on paper, 5.55e-17 in floats: relu′(0) = 0, as by hand
    text = ("input: [0.1, 0.2, -0.3]\nlayers:\n  - {type: dense, name: d, weights: [[1, 1, 1]]}\n"
            "  - {type: relu, name: r}\nloss: {type: half_sse, target: [1]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["d.out"].values[0, 0] == 0.1 + 0.2 - 0.3 != 0
    assert trace["r.out"].values[0, 0] == 0 and trace["d.delta"].values[0, 0] == 0


def test_where_the_exact_value_cannot_be_had_the_noise_bound_decides():
    # a sigmoid before the relu: no exact trace; within its noise of 0 the input is 0
    text = ("input: [1]\nlayers:\n  - {type: sigmoid, name: s}\n"
            f"  - {{type: dense, name: d, weights: [[1]], bias: {-1 / (1 + math.exp(-1))!r}}}\n"
            "  - {type: relu, name: r}\nupstream: {delta: [1]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert abs(trace["d.out"].values[0, 0]) < 1e-15 and trace["r.out"].values[0, 0] == 0 and not any("exact" in note for note in trace["r.out"].notes)


@pytest.mark.parametrize("kind", ["exp", "square", "elu", "softplus", "silu", "gelu"])
def test_rounding_a_delta_below_a_smooth_activation_runs(kind):
    # the rounded step's noise bound comes through the activation's backward_noise
    text = (f"input: [[0.59, 0.2], [0.01, 0.7]]\nlayers:\n  - {{type: {kind}, name: a}}\n"
            "  - {type: maxpool, name: p, size: 2}\nupstream: {delta: [0.5]}\n"
            "rounding: {decimals: 4, mode: truncate, apply: [input.delta]}\n")
    trace = bptrace.run(bptrace.loads(text))
    assert trace["input.delta"].rounded


@pytest.mark.parametrize("conv, conventions", [
    ("{type: conv, name: c, out_channels: 4, size: 3}", "{}"),
    ("{type: conv, name: c, out_channels: 4, size: [3, 2], stride: [2, 1], padding: 1}", "{kernel: convolution}"),
    ("{type: conv, name: c, out_channels: 6, size: 3, dilation: 2, groups: 2, padding: [2, 1], bias: false}", "{}"),
    ("{type: conv, name: c, out_channels: 2, size: 2, groups: 2, stride: 3}", "{kernel: convolution}"),
])
def test_conv_noise_magnitudes_sum_the_loops_terms(conv, conventions):
    """The noise bounds' magnitude runs of a conv are summed with numpy: the same terms as
    the loops (checked here on magnitudes over strides, padding, dilation, groups, the
    convolution convention, a batch and no bias), in another order."""
    from bptrace.layers.conv import Conv
    scenario = bptrace.loads(f"conventions: {conventions}\ninput: {{random: uniform, shape: [2, 4, 7, 6], seed: 1}}\n"
                             f"init: {{scheme: glorot_uniform, seed: 0}}\nlayers:\n  - {conv}\nloss: {{type: sum}}\n")
    layer = scenario.layers[0]
    assert type(layer) is Conv
    rng = np.random.default_rng(5)
    x, delta = rng.random(layer.in_shape), rng.random(layer.out_shape)
    p = {role: rng.random(values.shape) for role, values in layer.params.items()}
    recs = {role: None for role in ("in",) + layer.param_roles}
    loops = {"out": layer.forward(x, p, None), **layer.backward(x, None, delta, p, recs)}
    summed = {"out": layer.magnitude_forward(x, p), **layer.magnitude_backward(x, None, delta, p, recs)}
    assert summed.keys() == loops.keys()
    for role in loops:
        np.testing.assert_allclose(summed[role], loops[role], rtol=1e-14, atol=0, err_msg=role)


def test_the_exact_trace_that_decides_relus_runs_forward_only(monkeypatch):
    """The exact values decide relu's side from forward values alone: the re-trace in
    fractions stops after the last relu-like layer of the last training step (its backward
    cost a Zhang-sized network twice its forward, in fractions).  Earlier training steps still
    run whole, since their updates feed the next step."""
    from bptrace.layers.dense import Dense
    calls = []
    for method in ("forward", "backward"):
        original = getattr(Dense, method)

        def spy(self, x, *rest, _original=original, _method=method):
            calls.append((_method, self.name, np.asarray(x).dtype == object))
            return _original(self, x, *rest)
        monkeypatch.setattr(Dense, method, spy)
    text = ("input: [0.1, 0.2, -0.3]\nlayers:\n  - {type: dense, name: d, weights: [[1, 1, 1]]}\n"
            "  - {type: relu, name: r}\n  - {type: dense, name: h, weights: [[2]]}\n"
            "loss: {type: half_sse, target: [1]}\nlearning_rate: 0.1\nsteps: 2\n")
    trace = bptrace.run(bptrace.loads(text))
    exact = [(method, name) for method, name, in_fractions in calls if in_fractions]
    # step 1 whole (its update feeds step 2), then step 2's forward as far as the relu
    assert exact == [("forward", "d"), ("forward", "h"), ("backward", "h"), ("backward", "d"), ("forward", "d")]
    assert trace["step2.r.out"].values[0, 0] == 0 and trace["step2.d.delta"].values[0, 0] == 0


@pytest.mark.parametrize("loss", ["bce", "cross_entropy"])
def test_a_function_after_the_last_relu_does_not_stop_its_exact_decision(torch, loss):
    # 1e6 − 1e6 + 1e-9 is 1e-9 (PyTorch: relu passes it); a sigmoid, bce or cross-entropy after
    # the relu has no exact value, but the decision needs none of them
    F = torch.nn.functional
    head = ("  - {type: dense, name: h, weights: [[3, 1]]}\n  - {type: sigmoid, name: s}\n"
            "loss: {type: bce, target: [1]}\n") if loss == "bce" else \
        "  - {type: dense, name: h, weights: [[3, 1], [1, 0]]}\nloss: {type: cross_entropy, target: [0]}\n"
    text = ("input: [1000000, 1000000, 0.000000001]\nlayers:\n"
            "  - {type: dense, name: d, weights: [[1, -1, 1], [1, -1, 2]]}\n  - {type: relu, name: r}\n" + head)
    trace = bptrace.run(bptrace.loads(text))
    x = torch.tensor([1e6, 1e6, 1e-9], dtype=torch.float64)
    w = torch.tensor([[1.0, -1.0, 1.0], [1.0, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    r = torch.relu(w @ x)
    if loss == "bce":
        z = r @ torch.tensor([3.0, 1.0], dtype=torch.float64)
        F.binary_cross_entropy(torch.sigmoid(z).reshape(1), torch.ones(1, dtype=torch.float64)).backward()
    else:
        z = torch.tensor([[3.0, 1.0], [1.0, 0.0]], dtype=torch.float64) @ r
        F.cross_entropy(z[None], torch.tensor([0])).backward()
    assert trace["r.out"].values.reshape(-1).tolist() == r.tolist() == [1e-9, 2e-9]
    assert np.allclose(trace["d.grad.weights"].values, w.grad.numpy(), rtol=1e-12, atol=0)


def test_an_elu_input_zero_within_noise_takes_its_exact_side(torch):
    # the other unit's elu(−0.5) has no exact value; the decision reads only elu's input
    text = ("input: [1000000, 1000000, 0.000000001]\nlayers:\n"
            "  - {type: dense, name: d, weights: [[1, -1, 1], [0, 0, -500000000]]}\n"
            "  - {type: elu, name: e, alpha: 0.5}\n  - {type: dense, name: h, weights: [[3, 1]]}\n"
            "loss: {type: half_sse, target: [1]}\n")
    trace = bptrace.run(bptrace.loads(text))
    x = torch.tensor([1e6, 1e6, 1e-9], dtype=torch.float64)
    w = torch.tensor([[1.0, -1.0, 1.0], [0.0, 0.0, -5e8]], dtype=torch.float64, requires_grad=True)
    e = torch.nn.functional.elu(w @ x, alpha=0.5)
    out = e @ torch.tensor([3.0, 1.0], dtype=torch.float64)
    (0.5 * (out - 1) ** 2).backward()
    assert np.allclose(trace["e.out"].values.reshape(-1), e.detach().numpy(), rtol=1e-12, atol=0)
    assert np.allclose(trace["d.grad.weights"].values, w.grad.numpy(), rtol=1e-12, atol=0)


def test_a_max_pool_window_tied_only_by_float_noise_takes_its_exact_maximum(torch):
    # c.out = (0, 1e6 − 1e6 + 1e-9): 1e-9 is within its noise bound of 0, but larger on paper
    # and in PyTorch, which routes the error to it; a true tie still goes to the first
    text = ("input: [[0, 0, 0, 1000000, 1000000, 0.000000001]]\nlayers:\n"
            "  - {type: conv, name: c, kernel: [[1, -1, 1]], stride: [1, 3]}\n"
            "  - {type: maxpool, name: p, size: [1, 2]}\n  - {type: flatten, name: f}\n"
            "  - {type: dense, name: h, weights: [[2]]}\nloss: {type: half_sse, target: [1]}\n")
    trace = bptrace.run(bptrace.loads(text))
    x = torch.tensor([[[[0, 0, 0, 1e6, 1e6, 1e-9]]]], dtype=torch.float64)
    k = torch.tensor([[[[1.0, -1.0, 1.0]]]], dtype=torch.float64, requires_grad=True)
    out = 2 * torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x, k, stride=(1, 3)), (1, 2)).reshape(-1)
    (0.5 * (out - 1) ** 2).sum().backward()
    assert trace["p.out"].values.reshape(-1).tolist() == [1e-9]
    assert np.allclose(trace["c.grad.kernel"].values.reshape(-1), k.grad.reshape(-1).numpy(), rtol=1e-12, atol=0)
    assert any("exact" in note for note in trace["p.out"].notes)
    # 0.1 + 0.2 against 0.3: equal on paper, the first takes the error
    tie = bptrace.run(bptrace.loads(text.replace("0, 0, 0, 1000000, 1000000, 0.000000001", "0.1, 0.2, 0, 0.3, 0, 0")
                                        .replace("[[1, -1, 1]]", "[[1, 1, 1]]")))
    assert tie["c.out"].values.reshape(-1).tolist() == [0.1 + 0.2, 0.3]
    assert tie["c.delta"].values.reshape(-1).tolist()[1] == 0 and any("tie" in note for note in tie["p.out"].notes)


def test_a_max_pool_window_of_the_same_float_stays_a_tie_as_in_pytorch(torch):
    # 1.35·x − 2 is −2.0 in floats for every x near 1e-150, though not on paper: PyTorch
    # routes the error to the first cell, and so does bptrace
    text = ("input: [[1e-150, 3e-150]]\nlayers:\n  - {type: conv, name: c, kernel: [[1.35]], bias: -2}\n"
            "  - {type: maxpool, name: p, size: [1, 2]}\n  - {type: flatten, name: f}\n"
            "loss: {type: half_sse, target: [0]}\n")
    trace = bptrace.run(bptrace.loads(text))
    x = torch.tensor([[[[1e-150, 3e-150]]]], dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.max_pool2d(1.35 * x - 2, (1, 2))
    (0.5 * out ** 2).sum().backward()
    assert trace["input.delta"].values.reshape(-1).tolist() == x.grad.reshape(-1).tolist() == [1.35 * -2.0, 0.0]
