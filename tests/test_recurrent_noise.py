"""Float-noise bounds of the recurrent layers' inner values, and a relu RNN's side of 0.

Oracle: the same networks worked on the written decimals exactly, by a small reverse-mode
graph written here: Fractions for a relu RNN (nothing but + − · and relu), mpmath at 60
digits for tanh and σ (LSTM, GRU).  Every traced value of the layer (gates, states,
their deltas, the gradients, the input's delta) must lie within its noise bound of the
exact number."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

import bptrace
from bptrace.engine import _Run


class V:
    """A node of the exact graph: its value, and (node, local derivative) per input."""

    def __init__(self, value, parents=()):
        self.value, self.parents, self.grad = value, parents, 0

    def __add__(self, other):
        other = lift(other)
        return V(self.value + other.value, ((self, 1), (other, 1)))

    __radd__ = __add__

    def __sub__(self, other):
        other = lift(other)
        return V(self.value - other.value, ((self, 1), (other, -1)))

    def __rsub__(self, other):
        return lift(other) - self

    def __mul__(self, other):
        other = lift(other)
        return V(self.value * other.value, ((self, other.value), (other, self.value)))

    __rmul__ = __mul__


def lift(x):
    return x if isinstance(x, V) else V(x)


def relu(v):
    return V(v.value if v.value > 0 else 0 * v.value, ((v, 1 if v.value > 0 else 0),))   # relu′(0) = 0


def tanh(v):
    import mpmath
    y = mpmath.tanh(v.value)
    return V(y, ((v, 1 - y * y),))


def sigmoid(v):
    import mpmath
    y = 1 / (1 + mpmath.exp(-v.value))
    return V(y, ((v, y * (1 - y)),))


def backprop(root):
    order, seen = [], set()

    def visit(node):
        if id(node) not in seen:
            seen.add(id(node))
            for parent, _ in node.parents:
                visit(parent)
            order.append(node)
    visit(root)
    root.grad = 1
    for node in reversed(order):
        for parent, local in node.parents:
            parent.grad = parent.grad + node.grad * local


def exact_run(kind, spec, x, target, number, act=None):
    """The layer through time as torch.nn.RNN / LSTM / GRU define it, on exact numbers, with
    loss ½·Σ(h − target)²: {traced name: nested values} of every value and delta."""
    N, T, H = len(x), len(x[0]), spec["hidden"]
    leaf = lambda values: [leaf(v) for v in values] if isinstance(values, list) else V(number(values))
    W_ih, W_hh, b_ih, b_hh = (leaf(spec[key]) for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    xs, h0 = leaf(x), leaf(spec["h0"])
    c0 = leaf(spec["c0"]) if kind == "lstm" else None
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    nodes = {}
    loss = V(number(0))

    def keep(name, n, t, values):
        nodes.setdefault(name, [[None] * T for _ in range(N)])[n][t] = values

    for n in range(N):
        h, c = h0[n], c0[n] if c0 else None
        for t in range(T):
            px = [b_ih[j] + sum((W_ih[j][k] * xs[n][t][k] for k in range(len(x[0][0]))), V(number(0)))
                  for j in range(G * H)]
            ph = [b_hh[j] + sum((W_hh[j][k] * h[k] for k in range(H)), V(number(0))) for j in range(G * H)]
            if kind == "rnn":
                h = [act(px[j] + ph[j]) for j in range(H)]
            elif kind == "lstm":
                i, f, g, o = ([fn(px[b * H + j] + ph[b * H + j]) for j in range(H)]
                              for b, fn in enumerate((sigmoid, sigmoid, tanh, sigmoid)))
                c = [f[j] * c[j] + i[j] * g[j] for j in range(H)]
                h = [o[j] * tanh(c[j]) for j in range(H)]
                for name, values in zip(("gate.i", "gate.f", "gate.g", "gate.o", "c"), (i, f, g, o, c)):
                    keep(name, n, t, values)
            else:
                r, z = ([sigmoid(px[b * H + j] + ph[b * H + j]) for j in range(H)] for b in range(2))
                g = [tanh(px[2 * H + j] + r[j] * ph[2 * H + j]) for j in range(H)]
                h = [(1 - z[j]) * g[j] + z[j] * h[j] for j in range(H)]
                for name, values in zip(("gate.r", "gate.z", "gate.n"), (r, z, g)):
                    keep(name, n, t, values)
            keep("h", n, t, h)
            for j in range(H):
                e = h[j] - number(target[n][t][j])
                loss = loss + number(Fraction(1, 2)) * e * e
    backprop(loss)
    value = lambda v: [value(u) for u in v] if isinstance(v, list) else v.value
    grad = lambda v: [grad(u) for u in v] if isinstance(v, list) else v.grad
    found = {f"L.{name}": value(v) for name, v in nodes.items()}
    found.update({f"L.{name}.delta": grad(v) for name, v in nodes.items()})
    found.update({f"L.grad.{key}": grad(p) for key, p in
                  zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh))})
    found["input.delta"] = grad(xs)
    found["L.out"] = found["L.h"]
    return found


def traced(text):
    """The engine's values and noise bounds, every bound computed (a rounded loss turns them on)."""
    scenario = bptrace.loads(text + "rounding: {decimals: 15, apply: [loss]}\n")
    one = _Run(scenario, {}, {}, True)
    one.trace()
    return one.values, one.noise


def scenario_text(kind, spec, x, target):
    layer = ", ".join(f"{key}: {json.dumps(value)}" for key, value in spec.items())
    return (f"input: {json.dumps(x)}\nlayers:\n  - {{type: {kind}, name: L, {layer}}}\n"
            f"loss: {{type: half_sse, target: {json.dumps(target)}}}\n")


def decimals(rng, *shape):
    """Numbers of 2-4 decimals, none of them exact in binary."""
    return np.round(rng.uniform(-1, 1, size=shape), rng.integers(2, 5)).tolist()


def assert_within_bounds(values, noise, exact, number_of):
    widest = 0.0
    checked = 0
    for name, reference in exact.items():
        computed, bound = values[name].reshape(-1), noise[name].reshape(-1)
        reference = np.array([number_of(v) for v in np.array(reference, dtype=object).reshape(-1)], dtype=object)
        assert computed.size == reference.size, name
        for k, (c, b, r) in enumerate(zip(computed.tolist(), bound.tolist(), reference)):
            error = abs(Fraction(c) - r) if isinstance(r, Fraction) else abs(c - r)
            assert error <= b, f"{name}[{k}]: float {c!r}, exact {r}, error {float(error):.3g} > bound {b:.3g}"
            widest = max(widest, b)
            checked += 1
    return checked, widest


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lstm_and_gru_inner_values_lie_within_their_bounds(kind, seed):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    rng = np.random.default_rng(seed)
    N, T, F, H = 2, 3, 2, 2
    G = {"lstm": 4, "gru": 3}[kind]
    spec = {"hidden": H, "weight_ih": decimals(rng, G * H, F), "weight_hh": decimals(rng, G * H, H),
            "bias_ih": decimals(rng, G * H), "bias_hh": decimals(rng, G * H), "h0": decimals(rng, N, H)}
    if kind == "lstm":
        spec["c0"] = decimals(rng, N, H)
    x, target = decimals(rng, N, T, F), decimals(rng, N, T, H)
    values, noise = traced(scenario_text(kind, spec, x, target))
    exact = exact_run(kind, spec, x, target, lambda v: mpmath.mpf(str(v)) if not isinstance(v, Fraction)
                      else mpmath.mpf(v.numerator) / v.denominator)
    checked, widest = assert_within_bounds(values, noise, exact, lambda v: v)
    inner = [name for name in exact if name.startswith("L.gate") or name in ("L.c", "L.h", "L.c.delta", "L.h.delta")]
    assert all(noise[name].min() > 0 for name in inner)     # every inner value carries a bound
    assert widest < 1e-13                                   # ... and a useful one: values are O(1)
    assert checked > 100


def relu_spec():
    return {"hidden": 2, "nonlinearity": "relu",
            "weight_ih": [[0.3, -0.7], [1, 1]], "weight_hh": [[0.45, -0.15], [0.25, 0.6]],
            "bias_ih": [0.05, -0.3], "bias_hh": [0.1, 0], "h0": [[0, 0]]}


def test_a_relu_rnn_decides_on_paper_and_its_bounds_hold_the_exact_values():
    # the second unit's first pre-activation is 0.1 + 0.2 − 0.3 = 0 on paper (5.6e-17 in
    # floats): relu(0) = 0 with relu′(0) = 0, as the exact Fractions have it
    x = [[[0.1, 0.2], [0.5, -0.25], [-0.4, 0.9]]]
    target = [[[0.2, 0.1], [-0.3, 0.4], [0.6, 0.5]]]
    spec = relu_spec()
    values, noise = traced(scenario_text("rnn", spec, x, target))
    exact = exact_run("rnn", spec, x, target, lambda v: Fraction(str(v)) if not isinstance(v, Fraction) else v,
                      act=relu)
    assert exact["L.h"][0][0][1] == 0
    assert values["L.h"][0, 0, 1] == 0
    checked, _ = assert_within_bounds(values, noise, exact, lambda v: v)
    assert checked > 20


def test_a_relu_rnn_at_a_kink_of_float_noise_is_the_relu_layer():
    # one time step of a relu RNN from h0 = 0 is a dense layer and a relu: the same numbers
    x = [[0.1, 0.2]]
    rnn = bptrace.run(bptrace.loads(
        f"input: {json.dumps([x])}\nlayers:\n  - {{type: rnn, name: r, hidden: 1, nonlinearity: relu, "
        "weight_ih: [[1, 1]], weight_hh: [[0.5]], bias_ih: [-0.3], bias_hh: [0]}\n"
        "loss: {type: half_sse, target: [[[0.25]]]}\n"))
    dense = bptrace.run(bptrace.loads(
        f"input: {json.dumps(x)}\nlayers:\n  - {{type: dense, name: d, weights: [[1, 1]], bias: [-0.3]}}\n"
        "  - {type: relu, name: a}\nloss: {type: half_sse, target: [[0.25]]}\n"))
    assert dense["a.out"].values.tolist() == [[0]]          # the relu layer: 5.6e-17 is 0 on paper
    assert rnn["r.h"].values.reshape(-1).tolist() == dense["a.out"].values.reshape(-1).tolist()
    assert rnn["r.grad.weight_ih"].values.reshape(-1).tolist() == dense["d.grad.weights"].values.reshape(-1).tolist()
    assert rnn["r.grad.bias_ih"].values.reshape(-1).tolist() == dense["d.grad.bias"].values.reshape(-1).tolist()
    assert rnn["input.delta"].values.reshape(-1).tolist() == dense["input.delta"].values.reshape(-1).tolist()
