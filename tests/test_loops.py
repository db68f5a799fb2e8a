"""The layers' loops add each sum's terms one after another, left to right, in the terms' own
arithmetic: the helpers they are built from (`add_up`, `gather`), and conv and dense run on
exact fractions, checked against the formulas written out here term by term."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

import bptrace
from bptrace.layers.base import add_up, gather


def loop_sum(terms, start=0):
    total = start
    for term in terms:
        total += term
    return total


@pytest.mark.parametrize("terms", [[1e16, 1.0, -1e16, 1.0], [0.1] * 10 + [-1.0], [1.0, 1e-16, 1e-16, -1.0],
                                   [-0.0], [-0.0, -0.0], [3.0, -3.0, -0.0]])
def test_add_up_adds_as_a_loop_does(terms):
    # a compensated sum (Python 3.12's sum() of floats) gives 2.0, 1.1102e-16, 2.2e-16 for the first three
    for start in (0, 0.5, -0.0):
        expected = loop_sum(terms, start)
        got = add_up(iter(terms), start)
        assert got == expected and str(got) == str(expected), (terms, start)
    assert str(add_up(terms)) == str(loop_sum(terms))


def test_add_up_keeps_fractions_exact():
    terms = [Fraction(1, 3), Fraction(1, 6), Fraction(-1, 7)]
    assert add_up(terms) == Fraction(5, 14)
    assert isinstance(add_up(terms), Fraction)


def test_gather_always_gives_a_sequence():
    items = [10, 11, 12, 13]
    assert gather([2, 0])(items) == (12, 10)
    assert gather([3])(items) == (13,)
    assert gather([])(items) == ()
    assert gather([0, 1, 2, 3], 4)(items) is items
    assert gather([0, 1, 2], 4)(items) == (10, 11, 12)


def _layer(text):
    return bptrace.load(text + "loss: {type: sum}\n").layers


def _fractions(shape, seed):
    rng = np.random.default_rng(seed)
    values = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        values[idx] = Fraction(int(rng.integers(-9, 10)), int(rng.integers(1, 11)))
    return values


def _float(values):
    # each exact value rounded once to the nearest float, as np.array(dtype=float) does
    return np.array([[float(v) for v in np.ravel(values)]], dtype=float).reshape(np.shape(values))


CONV = """
input: {random: uniform, shape: [2, 4, 6, 5], seed: 0}
init: {scheme: glorot_uniform, seed: 0}
layers:
  - {type: conv, name: c, out_channels: 4, size: [3, 2], stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: 2}
"""


def test_conv_loops_run_on_fractions():
    (conv,) = _layer(CONV)
    _, _, H, W = conv.in_shape
    O = conv.out_shape[1]
    _, G, kh, kw = conv.params["kernel"].shape
    x, kernel, bias = _fractions(conv.in_shape, 1), _fractions((O, G, kh, kw), 2), _fractions((O,), 3)
    delta = _fractions(conv.out_shape, 4)
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    out = np.zeros(conv.out_shape, dtype=object)
    x_delta = np.zeros(conv.in_shape, dtype=object)
    k_grad = np.zeros(kernel.shape, dtype=object)
    for n, o, i, j in np.ndindex(*conv.out_shape):
        out[n, o, i, j] += bias[o]
        for ck, u, v in itertools.product(range(G), range(kh), range(kw)):
            c, h, w = (o // (O // 2)) * G + ck, i * sh + dh * u - ph, j * sw + dw * v - pw
            if 0 <= h < H and 0 <= w < W:
                out[n, o, i, j] += kernel[o, ck, u, v] * x[n, c, h, w]
                x_delta[n, c, h, w] += delta[n, o, i, j] * kernel[o, ck, u, v]
                k_grad[o, ck, u, v] += delta[n, o, i, j] * x[n, c, h, w]
    got = conv.forward(x, {"kernel": kernel, "bias": bias}, None)
    assert np.array_equal(got, _float(out))
    back = conv.backward(x, None, delta, {"kernel": kernel, "bias": bias}, {"kernel": None, "bias": None, "in": None})
    assert np.array_equal(back["in"], _float(x_delta))
    assert np.array_equal(back["kernel"], _float(k_grad))
    assert np.array_equal(back["bias"], _float(delta.sum(axis=(0, 2, 3))))


def test_dense_loops_run_on_fractions():
    # (avgpool's share 1/count is a float constant, so its loops give floats whatever they read)
    _, dense = _layer("""
input: {random: uniform, shape: [2, 1, 5, 4], seed: 0}
init: {scheme: glorot_uniform, seed: 0}
layers:
  - {type: flatten, name: f}
  - {type: dense, name: h, out: 3}
""")
    F = dense.in_shape[1]
    xd, weights, bias, delta = (_fractions(shape, seed) for shape, seed in
                                ((dense.in_shape, 6), ((3, F), 7), ((3,), 8), (dense.out_shape, 9)))
    assert np.array_equal(dense.forward(xd, {"weights": weights, "bias": bias}, None), _float(xd @ weights.T + bias))
    back = dense.backward(xd, None, delta, {"weights": weights, "bias": bias},
                          {"weights": None, "bias": None, "in": None})
    assert np.array_equal(back["in"], _float(delta @ weights))
    assert np.array_equal(back["weights"], _float(delta.T @ xd))
    assert np.array_equal(back["bias"], _float(delta.sum(axis=0)))


def test_a_scenario_stays_picklable_after_its_loops_made_their_tables():
    # the tables hold gathers of one index (1×1 kernel, a window cut to one cell by the
    # padding) and whole lists (a tap that reads every output position)
    import pickle

    scenario = bptrace.load("""
input: {random: uniform, shape: [1, 2, 4, 4], seed: 9}
init: {scheme: glorot_uniform, seed: 4}
layers:
  - {type: conv, name: c1, out_channels: 2, size: 3, padding: 2, stride: 3}
  - {type: conv, name: c2, out_channels: 1, size: 1}
  - {type: avgpool, name: a, size: 2, padding: 1}
  - {type: batchnorm, name: bn}
  - {type: flatten}
loss: {type: sum}
""")
    first = bptrace.run(scenario)
    again = bptrace.run(pickle.loads(pickle.dumps(scenario)))
    assert [step.values.tobytes() for step in first.steps] == [step.values.tobytes() for step in again.steps]
