"""The second oracle, which needs no torch: central finite differences of the loss.

For every parameter element, input element and layer-output element p,
(L(p + h) − L(p − h)) / 2h must match the engine's gradient (`L.grad.*`, `input.delta`,
`L.delta`).  Layer outputs are nudged by pinning them (the engine's `overrides`, as the
checker uses them), so that every later step recomputes from the nudged value.  With an
`upstream` error the loss is L = Σ out · delta at that layer.  Agreement:
|fd − grad| ≤ ATOL + RTOL · |grad|.  The cases keep clear of kinks (a relu input near 0, a
max-pool window with two nearly equal maxima), and `assert_smooth` says so when one is not.
"""
from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest

import bptrace
from bptrace.scenario import Patch

H = 1e-6
RTOL = 1e-6
ATOL = 1e-8


def vals(*shape, seed=0, low=-1.0, high=1.0):
    """A YAML literal of random numbers at full precision (so no two are exactly equal)."""
    return json.dumps(np.random.default_rng(seed).uniform(low, high, size=shape).tolist())


CASES = {
    "conv-maxpool-sigmoid-dense-upstream": f"""
input: {vals(5, 5, seed=1)}
layers:
  - {{type: conv, name: c1, kernel: {vals(2, 2, seed=2)}, bias: 0.03}}
  - {{type: maxpool, name: p1, size: 2}}
  - {{type: sigmoid, name: s1}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: h, weights: {vals(2, 4, seed=3)}, bias: [0.1, -0.2]}}
upstream: {{layer: h, delta: [0.25, -0.15]}}
""",
    "convolution-stride-padding-tanh-avgpool-column-sse": f"""
conventions: {{kernel: convolution, flatten: column}}
input: {vals(2, 4, 4, seed=4)}
layers:
  - {{type: conv, kernel: {vals(2, 2, 3, 2, seed=5)}, bias: [0.1, -0.1], stride: [2, 1], padding: 1}}
  - {{type: tanh}}
  - {{type: avgpool, size: 2, stride: 2, padding: 1}}
  - {{type: flatten}}
  - {{type: dense, weights: {vals(3, 12, seed=6)}}}
loss: {{type: sse, target: [0.5, -0.5, 0.25]}}
""",
    "groups-leaky-overlapping-maxpool-softmax-mse": f"""
input: {vals(4, 3, 4, seed=7)}
layers:
  - {{type: conv, kernel: {vals(2, 2, 2, 2, seed=8)}, groups: 2, bias: [0.1, 0.2]}}
  - {{type: leaky_relu, slope: 0.2}}
  - {{type: maxpool, size: 2, stride: 1}}
  - {{type: flatten}}
  - {{type: dense, weights: {vals(3, 4, seed=9)}}}
  - {{type: softmax}}
loss: {{type: mse, target: [0.2, 0.3, 0.5]}}
""",
    "depthwise-relu-identity-batch-cross-entropy": f"""
input: {vals(2, 2, 3, 3, seed=10)}
layers:
  - {{type: conv, kernel: {vals(2, 2, 2, seed=11)}, groups: 2, bias: [0.5, 0.5]}}
  - {{type: relu}}
  - {{type: identity}}
  - {{type: flatten}}
  - {{type: dense, weights: {vals(4, 8, seed=12)}}}
loss: {{type: cross_entropy, target: [3, 1]}}
learning_rate: 0.1
""",
    "dense-cross-entropy-probabilities": f"""
input: {vals(2, 5, seed=13)}
layers:
  - {{type: dense, weights: {vals(4, 5, seed=14)}, bias: {vals(4, seed=15)}}}
  - {{type: tanh}}
  - {{type: dense, weights: {vals(3, 4, seed=16)}}}
loss: {{type: cross_entropy, target: [[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]]}}
""",
    "conv-sigmoid-bce": f"""
input: {vals(4, 4, seed=17)}
layers:
  - {{type: conv, kernel: {vals(2, 2, 2, seed=18)}, bias: [0.1, -0.1]}}
  - {{type: sigmoid}}
loss: {{type: bce, target: {vals(2, 3, 3, seed=19, low=0.0, high=1.0)}}}
""",
    "conv-avgpool-half-sse-map": f"""
input: {vals(2, 1, 4, 4, seed=20)}
layers:
  - {{type: conv, kernel: {vals(3, 3, seed=21)}, padding: 1}}
  - {{type: avgpool, size: 3, stride: 1}}
loss: {{type: half_sse, target: {vals(2, 2, 2, seed=22)}}}
""",
    "upstream-middle": f"""
input: {vals(5, 5, seed=23)}
layers:
  - {{type: conv, name: c1, kernel: {vals(2, 2, seed=24)}}}
  - {{type: sigmoid, name: s1}}
  - {{type: conv, name: c2, kernel: {vals(2, 2, seed=25)}, stride: 2}}
  - {{type: flatten}}
  - {{type: dense, weights: {vals(1, 4, seed=26)}}}
upstream: {{layer: c2, delta: {vals(2, 2, seed=27)}}}
""",
    "signal-1d": f"""
input: {vals(9, seed=28)}
layers:
  - {{type: conv, kernel: {vals(3, seed=29)}, padding: 1, stride: 2, bias: 0.1}}
  - {{type: maxpool, size: 2, stride: 1}}
  - {{type: tanh}}
loss: {{type: sse, target: {vals(4, seed=30)}}}
""",
    "residual-block": f"""
input: {vals(1, 2, 4, 4, seed=31)}
layers:
  - {{type: conv, name: c1, kernel: {vals(2, 2, 3, 3, seed=32)}, padding: 1, bias: [0.1, -0.1]}}
  - {{type: relu, name: r1}}
  - {{type: conv, name: c2, kernel: {vals(2, 2, 3, 3, seed=33)}, padding: 1}}
  - {{type: add, name: skip, from: [c2, c1]}}
  - {{type: tanh, name: r2}}
  - {{type: maxpool, name: p, size: 2}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: h, weights: {vals(2, 8, seed=34)}}}
loss: {{type: half_sse, target: [0.5, -0.5]}}
""",
    "two-inputs-multiply-concat": f"""
inputs: {{x: {vals(2, 3, seed=35)}, y: {vals(2, 3, seed=36)}}}
layers:
  - {{type: dense, name: a, from: x, weights: {vals(3, 3, seed=37)}}}
  - {{type: dense, name: b, from: y, weights: {vals(3, 3, seed=38)}}}
  - {{type: multiply, name: m, from: [a, b]}}
  - {{type: multiply, name: sq, from: [a, a]}}
  - {{type: concat, name: k, from: [m, sq, y]}}
  - {{type: tanh, name: t}}
  - {{type: dense, name: o, weights: {vals(2, 9, seed=39)}}}
  - {{type: dense, name: unused, from: b, weights: {vals(1, 3, seed=40)}}}
output: o
loss: {{type: mse, target: {vals(2, 2, seed=41)}}}
""",
    # --- the losses without targets, l1, and the L2 penalty in the loss ---------------------
    "sum-of-outputs": f"""
input: {vals(4, 4, seed=40)}
layers:
  - {{type: conv, kernel: {vals(2, 2, seed=41)}, bias: 0.1}}
  - {{type: sigmoid}}
loss: {{type: sum}}
""",
    "mean-of-outputs-l2": f"""
input: {vals(2, 5, seed=42)}
layers:
  - {{type: dense, weights: {vals(3, 5, seed=43)}, bias: [0.1, 0.2, 0.3]}}
  - {{type: tanh}}
loss: {{type: mean}}
regularization: {{l2: 0.3}}
""",
    "l1-conv-dense": f"""
input: {vals(4, 4, seed=44)}
layers:
  - {{type: conv, kernel: {vals(2, 2, seed=45)}}}
  - {{type: flatten}}
  - {{type: dense, weights: {vals(2, 9, seed=46)}}}
loss: {{type: l1, target: [3, -3]}}
""",
    "dilation-no-bias-conv-transpose-ceil-avgpool-upsample-global-avgpool": f"""
input: {vals(1, 2, 3, 4, seed=42)}
layers:
  - {{type: conv, kernel: {vals(2, 2, 2, 2, seed=43)}, dilation: [2, 1], padding: 1, bias: false}}
  - {{type: tanh}}
  - {{type: conv_transpose, kernel: {vals(2, 1, 2, 3, seed=44)}, bias: [0.1, -0.1], groups: 2, stride: [2, 1],
     padding: 1, output_padding: [1, 0]}}
  - {{type: avgpool, size: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false}}
  - {{type: upsample, scale: [1, 2]}}
  - {{type: global_avgpool}}
  - {{type: dense, weights: {vals(3, 2, seed=45)}, bias: false}}
loss: {{type: mse, target: {vals(1, 3, seed=46)}}}
""",
    "dilated-ceil-maxpool-global-maxpool-convolution-transpose": f"""
conventions: {{kernel: convolution}}
input: {vals(1, 1, 6, 7, seed=47)}
layers:
  - {{type: conv_transpose, kernel: {vals(1, 2, 2, 2, seed=48)}, dilation: 2, bias: 0.05}}
  - {{type: maxpool, size: 2, stride: 3, dilation: 2, ceil_mode: true}}
  - {{type: sigmoid}}
  - {{type: global_maxpool}}
  - {{type: dense, weights: {vals(2, 2, seed=49)}}}
loss: {{type: sse, target: [0.3, -0.3]}}
""",
    "batchnorm-layernorm-dropout-smooth": f"""
input: {vals(2, 2, 2, 2, seed=300)}
layers:
  - {{type: batchnorm, name: bn, gamma: [1.3, -0.9], beta: [0.1, -0.3]}}
  - {{type: gelu, name: g}}
  - {{type: layernorm, name: ln, gamma: {vals(2, 2, 2, seed=302, low=0.5, high=1.5)}, beta: {vals(2, 2, 2, seed=303)}}}
  - {{type: silu, name: si}}
  - {{type: elu, name: e, alpha: 0.8}}
  - {{type: dropout, name: d, p: 0.3, seed: 4}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: h, weights: {vals(4, 8, seed=304)}}}
  - {{type: batchnorm, name: bn2, mode: eval, running_mean: [0.1, -0.2, 0.0, 0.3], running_var: [0.9, 1.4, 0.6, 1.1]}}
  - {{type: softplus, name: sp}}
  - {{type: square, name: q}}
  - {{type: exp, name: ex}}
  - {{type: log, name: lg}}
loss: {{type: mse, target: {vals(2, 4, seed=305)}}}
""",
}


def loss_of(scenario, overrides=None) -> float:
    # explain with no elements for every step: nothing is recorded, the loops run faster
    quiet = {name: set() for name in scenario.shapes}
    trace = bptrace.run(scenario, overrides=overrides or {}, explain=quiet)
    if scenario.upstream is not None:
        out = trace.value(f"{scenario.upstream.layer}.out")
        return float(np.sum(out * scenario.upstream.delta))
    return trace.loss


def central(f, base: np.ndarray) -> np.ndarray:
    """(f(base + h·e) − f(base − h·e)) / 2h for every element e of base."""
    grad = np.zeros(base.shape)
    for idx in np.ndindex(*base.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += H
        minus[idx] -= H
        grad[idx] = (f(plus) - f(minus)) / (2 * H)
    return grad


def finite_differences(scenario) -> dict:
    """name -> the finite-difference gradient, for every gradient the engine traces."""
    trace = bptrace.run(scenario)
    result = {}

    def swapping(owner, key):
        original = owner[key]

        def f(values):
            owner[key] = values
            try:
                return loss_of(scenario)
            finally:
                owner[key] = original
        return f

    for name in scenario.inputs:
        if f"{name}.delta" in trace:
            result[f"{name}.delta"] = central(swapping(scenario.inputs, name), scenario.inputs[name])
    for layer in scenario.layers:
        if f"{layer.name}.delta" not in trace:
            continue                       # after the upstream layer: no backward pass there
        for role in layer.params:
            result[f"{layer.name}.grad.{role}"] = central(swapping(layer.params, role), layer.params[role])

        out_name = f"{layer.name}.out"

        def with_out(values, out_name=out_name):
            mask = np.ones(values.shape, dtype=bool)
            return loss_of(scenario, {out_name: Patch(out_name, values, mask)})
        result[f"{layer.name}.delta"] = central(with_out, trace.value(out_name))
        # a layer's inner values (batch norm's mean, var, xhat) nudged the same way: V.delta
        # is ∂loss/∂V with everything after V recomputed from it
        for inner in layer.backward_extras:
            inner_name = f"{layer.name}.{inner.removesuffix('.delta')}"
            result[f"{layer.name}.{inner}"] = central(lambda values, n=inner_name: with_out(values, n),
                                                      trace.value(inner_name))
    return result


def assert_smooth(scenario, margin=1e-4):
    """The loss is differentiable around this point: no relu/leaky input and no max-pool
    runner-up within `margin` of the switch."""
    trace = bptrace.run(scenario)
    for layer in scenario.layers:
        x = trace.value(scenario.plan.node(layer.name).reads[0].out)
        if layer.type in ("relu", "leaky_relu"):
            assert np.abs(x).min() > margin, f"{layer.name}: an input is within {margin} of the kink"
        if layer.type in ("maxpool", "global_maxpool"):
            N, C, Ho, Wo = layer.grid
            for n, c, i, j in product(range(N), range(C), range(Ho), range(Wo)):
                window = np.sort([x[n, c, h, w] for h, w in layer.window(i, j)])[::-1]
                if window.size > 1:
                    assert window[0] - window[1] > margin, f"{layer.name}: a near tie in window {(n, c, i, j)}"


@pytest.mark.parametrize("text", list(CASES.values()), ids=list(CASES))
def test_gradients_match_finite_differences(text):
    scenario = bptrace.loads(text)
    assert_smooth(scenario)
    trace = bptrace.run(scenario)
    fd = finite_differences(scenario)
    gradient_names = {s.name for s in trace.steps if s.name.endswith(".delta") or ".grad." in s.name}
    assert gradient_names == set(fd), "every traced gradient has a finite-difference twin"
    failures = []
    for name, approx in fd.items():
        exact = trace.value(name)
        bad = ~np.isclose(exact, approx, rtol=RTOL, atol=ATOL)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            failures.append(f"{name}{list(where)}: engine {exact[where]!r}, finite difference {approx[where]!r}")
    assert not failures, "\n".join(failures)


def test_cases_cover_every_layer_and_loss():
    from bptrace.layers import LAYERS
    from bptrace.scenario import LOSS_TYPES
    scenarios = [bptrace.loads(text) for text in CASES.values()]
    assert {layer.type for sc in scenarios for layer in sc.layers} == set(LAYERS)
    assert {sc.loss.type for sc in scenarios if sc.loss} == set(LOSS_TYPES)
    assert any(sc.upstream for sc in scenarios)
