"""Every traced value against PyTorch autograd in float64 (see tests/oracle.py).

Each case is a small scenario written as YAML.  Cases without `given`/`rounding` are
compared with the whole-network oracle and with the step-by-step one; cases with them
only step by step (and their pinned/rounded values against their definition).
Agreement: |engine − torch| ≤ 1e-9 + 1e-9·|torch| for every element of every step.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bptrace
import oracle
from bptrace.layers import LAYERS
from bptrace.render.json import render as render_json
from bptrace.scenario import LOSS_TYPES

SCENARIO_FILES = sorted(path for path in (Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml")
                        if "arithmetic: symbolic" not in path.read_text())     # letters: no numbers to compare


def lit(*shape, seed=0, low=-1.0, high=1.0):
    """A YAML literal of random numbers with three decimals, for tensors too big to type."""
    values = np.round(np.random.default_rng(seed).uniform(low, high, size=shape), 3)
    return json.dumps(values.tolist())


def arange(*shape):
    """A YAML literal of 0, 1, 2, ... in the given shape (C order), as torch.arange(...).reshape."""
    return json.dumps(np.arange(int(np.prod(shape)), dtype=float).reshape(shape).tolist())


X44 = "[[0.2, -0.5, 0.9, 0.1], [0.7, 0.3, -0.8, 0.4], [-0.6, 0.05, 0.35, -0.25], [0.15, 0.95, -0.45, 0.6]]"

CASES = {
    # --- conv: both conventions, stride, padding, channels, groups ---------------------------
    "conv-correlation": f"""
input: {X44}
layers:
  - {{type: conv, name: c, kernel: [[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]], bias: 0.1}}
loss: {{type: half_sse, target: [[0.1, 0.2], [0.3, -0.1], [0.5, 0.0]]}}
""",
    "conv-convolution": f"""
conventions: {{kernel: convolution}}
input: {lit(5, 5, seed=1)}
layers:
  - {{type: conv, name: c1, kernel: [[0.3, -0.2], [0.1, 0.4], [0.7, -0.5]], bias: -0.05}}
  - {{type: sigmoid}}
  - {{type: conv, name: c2, kernel: [[0.9, -0.3], [0.2, 0.6]], bias: 0.2}}
loss: {{type: sse, target: {lit(2, 3, seed=2)}}}
""",
    "conv-stride-2": f"""
input: {lit(7, 7, seed=3)}
layers:
  - {{type: conv, kernel: {lit(3, 3, seed=4)}, stride: 2, bias: 0.3}}
  - {{type: tanh}}
loss: {{type: mse, target: {lit(3, 3, seed=5)}}}
""",
    "conv-stride-pair": f"""
input: {lit(5, 6, seed=6)}
layers:
  - {{type: conv, kernel: {lit(2, 2, seed=7)}, stride: [1, 2]}}
  - {{type: conv, kernel: {lit(2, 2, seed=8)}, stride: [2, 1]}}
loss: {{type: half_sse, target: {lit(2, 2, seed=9)}}}
""",
    "conv-padding": f"""
input: {X44}
layers:
  - {{type: conv, kernel: {lit(3, 3, seed=10)}, padding: 1, bias: 0.05}}
  - {{type: relu}}
  - {{type: conv, kernel: {lit(3, 3, seed=11)}, padding: 2, stride: 2}}
loss: {{type: half_sse, target: {lit(3, 3, seed=12)}}}
""",
    "conv-padding-pair-convolution": f"""
conventions: {{kernel: convolution}}
input: {lit(5, 4, seed=13)}
layers:
  - {{type: conv, kernel: {lit(3, 2, seed=14)}, padding: [1, 0], stride: [2, 1]}}
loss: {{type: sse, target: {lit(3, 3, seed=15)}}}
""",
    "conv-channels": f"""
input: {lit(2, 4, 4, seed=16)}
layers:
  - {{type: conv, kernel: {lit(3, 2, 2, 2, seed=17)}, bias: [0.1, -0.2, 0.3]}}
  - {{type: relu}}
  - {{type: conv, kernel: {lit(1, 3, 2, 2, seed=18)}}}
loss: {{type: half_sse, target: {lit(2, 2, seed=19)}}}
""",
    "conv-groups": f"""
input: {lit(4, 5, 5, seed=20)}
init: {{scheme: glorot_uniform, seed: 3}}
layers:
  - {{type: conv, out_channels: 6, size: 3, groups: 2, bias: [0.1, 0.2, 0.3, -0.1, -0.2, -0.3]}}
  - {{type: sigmoid}}
  - {{type: conv, kernel: {lit(2, 3, 2, 2, seed=21)}, groups: 2}}
upstream: {{delta: {lit(2, 2, 2, seed=22)}}}
""",
    "conv-depthwise": f"""
input: {lit(3, 4, 4, seed=23)}
layers:
  - {{type: conv, name: dw, kernel: {lit(3, 2, 2, seed=24)}, groups: 3, bias: [0.1, 0.0, -0.1]}}
  - {{type: conv, name: dm, kernel: {lit(6, 1, 2, 2, seed=25)}, groups: 3, padding: 1}}
  - {{type: conv, name: pw, kernel: {lit(2, 6, 1, 1, seed=26)}}}
loss: {{type: mse, target: {lit(2, 4, 4, seed=27)}}}
""",
    # --- pooling ---------------------------------------------------------------------------
    "maxpool": f"""
input: {X44}
layers:
  - {{type: maxpool, name: p, size: 2}}
loss: {{type: half_sse, target: [[0.5, 0.5], [0.5, 0.5]]}}
""",
    "maxpool-overlapping": f"""
input: {lit(5, 5, seed=28)}
layers:
  - {{type: conv, kernel: [[0.5, -0.4], [0.3, 0.8]]}}
  - {{type: maxpool, size: 3, stride: 1}}
loss: {{type: sse, target: {lit(2, 2, seed=29)}}}
""",
    "maxpool-padding-all-negative": f"""
input: {lit(5, 5, seed=30, low=-1.0, high=-0.1)}
layers:
  - {{type: maxpool, size: 3, stride: 2, padding: 1}}
loss: {{type: half_sse, target: {lit(3, 3, seed=31)}}}
""",
    "maxpool-ties": """
input: [[0.5, 0.5, 0.2, 0.9], [0.5, 0.1, 0.9, 0.9], [0.3, 0.3, 0.0, 0.0], [0.3, 0.3, 0.0, 0.0]]
layers:
  - {type: maxpool, size: 2, stride: 1}
  - {type: flatten}
  - {type: dense, weights: [[0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9]], bias: 0.1}
loss: {type: half_sse, target: [1.0]}
""",
    "maxpool-size-pair": f"""
input: {lit(2, 4, 6, seed=32)}
layers:
  - {{type: maxpool, size: [2, 3], stride: [2, 1]}}
upstream: {{delta: {lit(2, 2, 4, seed=33)}}}
""",
    "avgpool": f"""
input: {X44}
layers:
  - {{type: avgpool, size: 2}}
  - {{type: sigmoid}}
loss: {{type: half_sse, target: [[0.5, 0.2], [0.1, 0.9]]}}
""",
    "avgpool-padding-overlapping": f"""
input: {lit(2, 5, 5, seed=34)}
layers:
  - {{type: avgpool, size: 3, stride: 2, padding: 1}}
  - {{type: avgpool, size: [2, 1], stride: 1}}
loss: {{type: sse, target: {lit(2, 2, 3, seed=35)}}}
""",
    # --- activations ---------------------------------------------------------------------
    "sigmoid-tanh": f"""
input: {lit(3, 3, seed=36, low=-3, high=3)}
layers:
  - {{type: sigmoid}}
  - {{type: conv, kernel: [[1.5, -2.0], [0.5, 1.0]]}}
  - {{type: tanh}}
loss: {{type: half_sse, target: {lit(2, 2, seed=37)}}}
""",
    "relu-with-zeros": """
input: [[-0.5, 0.0, 0.7], [0.3, -0.2, 0.0], [0.9, 0.0, -0.1]]
layers:
  - {type: relu}
  - {type: conv, kernel: [[0.5, -1.0], [2.0, 0.25]], bias: -0.1}
  - {type: relu}
loss: {type: sse, target: [[0.1, 0.2], [0.3, 0.4]]}
""",
    "leaky-relu-slope": f"""
input: {lit(4, 4, seed=38)}
layers:
  - {{type: leaky_relu, slope: 0.2}}
  - {{type: conv, kernel: {lit(2, 2, seed=39)}}}
  - {{type: leaky_relu}}
loss: {{type: half_sse, target: {lit(3, 3, seed=40)}}}
""",
    "identity": f"""
input: {lit(3, 3, seed=41)}
layers:
  - {{type: identity}}
  - {{type: conv, kernel: {lit(2, 2, seed=42)}}}
  - {{type: identity, name: id2}}
loss: {{type: half_sse, target: {lit(2, 2, seed=43)}}}
""",
    "softmax-features": f"""
input: {lit(2, 4, seed=44)}
layers:
  - {{type: dense, weights: {lit(3, 4, seed=45)}, bias: [0.1, 0.0, -0.1]}}
  - {{type: softmax}}
loss: {{type: sse, target: [[1, 0, 0], [0, 0.5, 0.5]]}}
""",
    "softmax-over-channels": f"""
input: {lit(3, 2, 3, seed=46)}
layers:
  - {{type: softmax, name: sm}}
loss: {{type: half_sse, target: {lit(3, 2, 3, seed=47, low=0, high=1)}}}
""",
    # --- flatten and dense -----------------------------------------------------------------
    "flatten-row": f"""
input: {lit(2, 2, 3, seed=48)}
layers:
  - {{type: flatten, name: f}}
  - {{type: dense, weights: {lit(2, 12, seed=49)}, bias: [0.5, -0.5]}}
loss: {{type: half_sse, target: [0.3, -0.2]}}
""",
    "flatten-column": f"""
conventions: {{flatten: column}}
input: {lit(2, 2, 3, seed=48)}
layers:
  - {{type: flatten, name: f}}
  - {{type: dense, weights: {lit(2, 12, seed=49)}, bias: [0.5, -0.5]}}
loss: {{type: half_sse, target: [0.3, -0.2]}}
""",
    "dense-mlp-1d-features": """
input: [0.5, -1.0, 0.25, 2.0]
layers:
  - {type: dense, weights: [[0.1, 0.2, -0.3, 0.4], [-0.5, 0.6, 0.7, -0.8], [0.9, -0.1, 0.2, 0.3]], bias: 0.1}
  - {type: tanh}
  - {type: dense, weights: [[1.0, -2.0, 0.5]]}
loss: {type: sse, target: 0.7}
""",
    "dense-batch": f"""
input: {lit(3, 4, seed=50)}
layers:
  - {{type: dense, weights: {lit(5, 4, seed=51)}, bias: {lit(5, seed=52)}}}
  - {{type: sigmoid}}
  - {{type: dense, weights: {lit(2, 5, seed=53)}}}
loss: {{type: mse, target: {lit(3, 2, seed=54)}}}
""",
    # --- 1-D signals -------------------------------------------------------------------------
    "signal-1d": """
input: [0.1, 0.5, -0.3, 0.8, 0.2, -0.6, 0.4, 0.9]
layers:
  - {type: conv, kernel: [0.5, -1.0, 0.25], bias: 0.1}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: flatten}
  - {type: dense, weights: [[0.3, -0.6, 0.9]]}
loss: {type: half_sse, target: 0.5}
""",
    "signal-1d-stride-padding": """
conventions: {kernel: convolution}
input: [0.1, 0.5, -0.3, 0.8, 0.2, -0.6, 0.4]
layers:
  - {type: conv, kernel: [0.5, -1.0, 0.25], stride: 2, padding: 1}
  - {type: avgpool, size: 2, stride: 1, padding: 1}
  - {type: maxpool, size: 3, stride: 2, padding: 1}
upstream: {delta: [1.0, -2.0, 0.5]}
""",
    "signal-1d-channels": f"""
input: {lit(2, 1, 6, seed=55)}
layers:
  - {{type: conv, kernel: {lit(3, 2, 1, 2, seed=56)}, bias: [0.1, 0.2, 0.3]}}
  - {{type: tanh}}
loss: {{type: half_sse, target: {lit(3, 1, 5, seed=57)}}}
""",
    # --- batches -----------------------------------------------------------------------------
    "batch-conv-pool-dense": f"""
input: {lit(2, 2, 5, 5, seed=58)}
layers:
  - {{type: conv, name: c1, kernel: {lit(3, 2, 2, 2, seed=59)}, bias: [0.1, 0.0, -0.1]}}
  - {{type: relu}}
  - {{type: maxpool, size: 2}}
  - {{type: flatten}}
  - {{type: dense, name: d, weights: {lit(3, 12, seed=60)}}}
loss: {{type: cross_entropy, target: [2, 0]}}
learning_rate: 0.1
""",
    "batch-conv-sse": f"""
input: {lit(3, 1, 4, 4, seed=61)}
layers:
  - {{type: conv, kernel: {lit(2, 2, seed=62)}}}
  - {{type: avgpool, size: 3}}
loss: {{type: sse, target: [0.1, 0.2, 0.3]}}
""",
    # --- losses ------------------------------------------------------------------------------
    "loss-mse-map": f"""
input: {lit(2, 3, 3, seed=63)}
layers:
  - {{type: conv, kernel: {lit(2, 2, 2, 2, seed=64)}}}
loss: {{type: mse, target: {lit(2, 2, 2, seed=65)}}}
""",
    "loss-cross-entropy-index": f"""
input: {lit(4, seed=66)}
layers:
  - {{type: dense, weights: {lit(3, 4, seed=67)}, bias: [0.2, -0.1, 0.0]}}
loss: {{type: cross_entropy, target: 1}}
""",
    "loss-cross-entropy-probabilities": f"""
input: {lit(2, 4, seed=68)}
layers:
  - {{type: dense, weights: {lit(3, 4, seed=69)}}}
loss: {{type: cross_entropy, target: [[0.2, 0.5, 0.3], [0.0, 0.1, 0.9]]}}
""",
    "loss-cross-entropy-onehot": f"""
input: {lit(3, 3, seed=70)}
layers:
  - {{type: conv, kernel: [[0.5, -0.5], [0.25, 1.0]]}}
  - {{type: flatten}}
  - {{type: dense, weights: {lit(3, 4, seed=71)}}}
loss: {{type: cross_entropy, target: [0, 0, 1]}}
""",
    "loss-bce": f"""
input: {lit(2, 3, seed=72)}
layers:
  - {{type: dense, weights: {lit(2, 3, seed=73)}, bias: [0.1, -0.1]}}
  - {{type: sigmoid}}
loss: {{type: bce, target: [[1, 0], [0.3, 0.8]]}}
""",
    "loss-bce-map": f"""
input: {lit(3, 3, seed=74)}
layers:
  - {{type: conv, kernel: {lit(2, 2, seed=75)}}}
  - {{type: sigmoid}}
loss: {{type: bce, target: [[1, 0], [0, 1]]}}
""",
    # --- upstream ----------------------------------------------------------------------------
    "upstream-last": f"""
input: {lit(4, 4, seed=76)}
layers:
  - {{type: conv, kernel: {lit(2, 2, seed=77)}, bias: 0.1}}
  - {{type: sigmoid}}
upstream: {{delta: {lit(3, 3, seed=78)}}}
""",
    "upstream-middle": f"""
input: {lit(4, 4, seed=79)}
layers:
  - {{type: conv, name: c1, kernel: {lit(2, 2, seed=80)}}}
  - {{type: tanh, name: t1}}
  - {{type: conv, name: c2, kernel: {lit(2, 2, seed=81)}}}
  - {{type: flatten}}
  - {{type: dense, weights: {lit(2, 4, seed=82)}}}
upstream: {{layer: c2, delta: {lit(2, 2, seed=83)}}}
learning_rate: 0.5
""",
    # --- learning rate, init, random input, index base --------------------------------------
    "learning-rate": f"""
input: {lit(4, 4, seed=84)}
layers:
  - {{type: conv, kernel: {lit(2, 2, 2, seed=85)}, bias: [0.1, -0.1]}}
  - {{type: maxpool, size: 3}}
  - {{type: flatten}}
  - {{type: dense, weights: {lit(1, 2, seed=86)}, bias: 0.2}}
loss: {{type: half_sse, target: 1.0}}
learning_rate: 0.25
""",
    "init-glorot-random-input": """
conventions: {kernel: convolution, flatten: column}
input: {random: uniform, shape: [8, 8], seed: 1}
init: {scheme: glorot_uniform, seed: 0}
layers:
  - {type: conv, name: C1, out_channels: 2, size: 3}
  - {type: sigmoid}
  - {type: avgpool, size: 2}
  - {type: conv, name: C2, out_channels: 3, size: 2}
  - {type: sigmoid}
  - {type: flatten}
  - {type: dense, name: F, out: 4}
  - {type: sigmoid}
loss: {type: half_sse, target: [0, 1, 0, 0]}
learning_rate: 1.0
""",
    "random-normal-input": """
input: {random: normal, shape: [2, 3, 5], seed: 7}
init: {scheme: glorot_uniform, seed: 2}
layers:
  - {type: conv, out_channels: 2, size: [2, 3], stride: [1, 2]}
  - {type: leaky_relu, slope: 0.1}
loss: {type: mse, target: [[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]]]}
""",
    "index-base-1": f"""
conventions: {{index_base: 1}}
input: {X44}
layers:
  - {{type: conv, kernel: [[1, 2], [3, 4]]}}
  - {{type: maxpool, size: 3}}
loss: {{type: half_sse, target: 1}}
""",
    # --- given and rounding: later steps read the pinned/rounded numbers -------------------
    "given-whole-sigmoid": f"""
input: {X44}
layers:
  - {{type: conv, name: c, kernel: [[0.3, -0.2], [0.1, 0.4]]}}
  - {{type: sigmoid, name: s}}
  - {{type: maxpool, name: p, size: 2, stride: 1}}
loss: {{type: half_sse, target: [[1, 0], [0, 1]]}}
given:
  s.out: [[0.55, 0.47, 0.62], [0.5, 0.51, 0.49], [0.44, 0.66, 0.6]]
""",
    "given-elements-and-delta": f"""
input: {lit(4, 4, seed=87)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, seed=88)}}}
  - {{type: tanh, name: t}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: d, weights: {lit(2, 9, seed=89)}}}
loss: {{type: sse, target: [0.5, -0.5]}}
given:
  c.out[0,0]: 0.25
  c.out[2,1]: -0.5
  f.delta[4]: 0.125
  d.delta: [0.1, -0.2]
learning_rate: 0.1
""",
    "rounding-all-half-up": f"""
input: {lit(5, 5, seed=90)}
layers:
  - {{type: conv, kernel: {lit(2, 2, seed=91)}, bias: 0.03}}
  - {{type: maxpool, size: 2}}
  - {{type: sigmoid}}
  - {{type: flatten}}
  - {{type: dense, weights: {lit(2, 4, seed=92)}}}
loss: {{type: half_sse, target: [1, 0]}}
rounding: {{decimals: 3, mode: half_up, apply: all}}
learning_rate: 0.1
""",
    "rounding-backward-half-even": f"""
input: {lit(2, 4, 4, seed=93)}
layers:
  - {{type: conv, kernel: {lit(2, 2, 2, 2, seed=94)}}}
  - {{type: relu}}
  - {{type: avgpool, size: 2, stride: 1}}
loss: {{type: mse, target: {lit(2, 2, 2, seed=95)}}}
rounding: {{decimals: 2, mode: half_even, apply: backward}}
""",
    "rounding-forward-truncate": f"""
input: {lit(4, 4, seed=96)}
layers:
  - {{type: conv, kernel: {lit(2, 2, seed=97)}}}
  - {{type: sigmoid}}
  - {{type: maxpool, size: 2, stride: 1}}
  - {{type: softmax}}
upstream: {{delta: {lit(2, 2, seed=98)}}}
rounding: {{decimals: 2, mode: truncate, apply: [forward]}}
""",
    # --- graphs: `from`, several inputs, merge layers, a value read twice -------------------
    "graph-residual-block": f"""
input: {lit(1, 2, 5, 5, seed=120)}
layers:
  - {{type: conv, name: c1, kernel: {lit(2, 2, 3, 3, seed=121)}, padding: 1, bias: [0.1, -0.2]}}
  - {{type: relu, name: r1}}
  - {{type: conv, name: c2, kernel: {lit(2, 2, 3, 3, seed=122)}, padding: 1, bias: 0.05}}
  - {{type: add, name: skip, from: [c2, c1]}}
  - {{type: relu, name: r2}}
  - {{type: avgpool, name: p, size: 2}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: h, weights: {lit(3, 8, seed=123)}}}
loss: {{type: cross_entropy, target: 2}}
learning_rate: 0.1
""",
    "graph-skip-from-input": f"""
input: {lit(2, 4, seed=124)}
layers:
  - {{type: dense, name: a, weights: {lit(4, 4, seed=125)}}}
  - {{type: tanh, name: t}}
  - {{type: add, name: s, from: [t, input, input]}}
  - {{type: dense, name: o, weights: {lit(2, 4, seed=126)}, bias: [0.1, 0.2]}}
loss: {{type: half_sse, target: {lit(2, 2, seed=127)}}}
""",
    "graph-two-inputs-multiply-concat": f"""
inputs: {{x: {lit(2, 3, seed=128)}, y: {lit(2, 3, seed=129)}}}
layers:
  - {{type: dense, name: a, from: x, weights: {lit(3, 3, seed=130)}}}
  - {{type: sigmoid, name: g, from: y}}
  - {{type: multiply, name: m, from: [a, g]}}
  - {{type: multiply, name: sq, from: [a, a]}}
  - {{type: concat, name: k, from: [m, sq, x], axis: features}}
  - {{type: dense, name: o, weights: {lit(2, 9, seed=131)}}}
  - {{type: dense, name: side, from: g, weights: {lit(1, 3, seed=132)}}}
output: o
loss: {{type: mse, target: {lit(2, 2, seed=133)}}}
""",
    "graph-concat-channels-upstream": f"""
input: {lit(1, 1, 4, 4, seed=134)}
layers:
  - {{type: conv, name: c1, kernel: {lit(2, 1, 2, 2, seed=135)}}}
  - {{type: maxpool, name: p1, size: 3, stride: 1, padding: 1, from: input}}
  - {{type: conv, name: c2, kernel: {lit(1, 1, 2, 2, seed=136)}}}
  - {{type: concat, name: k, from: [c2, c1]}}
  - {{type: sigmoid, name: s}}
  - {{type: flatten}}
upstream: {{layer: s, delta: {lit(1, 3, 3, 3, seed=137)}}}
""",    # recurrent layers (rnn, lstm, gru) through time, against nn.RNN / LSTM / GRU
    "rnn-tanh-sequence": f"""
input: {lit(2, 3, 2, seed=301)}
layers:
  - {{type: rnn, hidden: 3, weight_ih: {lit(3, 2, seed=302)}, weight_hh: {lit(3, 3, seed=303)},
     bias_ih: {lit(3, seed=304)}, bias_hh: {lit(3, seed=305)}, h0: {lit(2, 3, seed=306)}}}
loss: {{type: half_sse, target: {lit(2, 3, 3, seed=307)}}}
""",
    "rnn-relu-last-then-dense": f"""
input: {lit(4, 2, seed=311)}
layers:
  - {{type: rnn, name: r, hidden: 2, nonlinearity: relu, return: last, weight_ih: {lit(2, 2, seed=312)},
     weight_hh: {lit(2, 2, seed=313)}, bias_ih: [0.3, 0.2]}}
  - {{type: dense, name: d, weights: {lit(2, 2, seed=314)}, bias: [0.1, -0.1]}}
loss: {{type: mse, target: [[0.5, -0.5]]}}
""",
    "lstm-batch-c0": f"""
input: {lit(2, 3, 2, seed=321)}
layers:
  - {{type: lstm, hidden: 2, weight_ih: {lit(8, 2, seed=322)}, weight_hh: {lit(8, 2, seed=323)},
     bias_ih: {lit(8, seed=324)}, bias_hh: {lit(8, seed=325)}, h0: {lit(2, 2, seed=326)}, c0: {lit(2, 2, seed=327)}}}
loss: {{type: half_sse, target: {lit(2, 3, 2, seed=328)}}}
""",
    "lstm-last-upstream": f"""
input: {lit(3, 3, seed=331)}
layers:
  - {{type: lstm, hidden: 2, return: last, weight_ih: {lit(8, 3, seed=332)}, weight_hh: {lit(8, 2, seed=333)}}}
upstream: {{delta: [[1.0, -2.0]]}}
""",
    "gru-batch": f"""
input: {lit(2, 3, 2, seed=341)}
layers:
  - {{type: gru, hidden: 2, weight_ih: {lit(6, 2, seed=342)}, weight_hh: {lit(6, 2, seed=343)},
     bias_ih: {lit(6, seed=344)}, bias_hh: {lit(6, seed=345)}, h0: {lit(2, 2, seed=346)}}}
loss: {{type: half_sse, target: {lit(2, 3, 2, seed=347)}}}
""",
    "gru-last-sgd": f"""
input: {lit(4, 1, seed=351)}
layers:
  - {{type: gru, hidden: 3, return: last, weight_ih: {lit(9, 1, seed=352)}, weight_hh: {lit(9, 3, seed=353)},
     bias_hh: {lit(9, seed=354)}}}
loss: {{type: half_sse, target: [[0.1, 0.2, 0.3]]}}
learning_rate: 0.1
""",
    # --- training: losses without targets, l1, fills, regularization, optimizers, steps -------
    "loss-sum-arange": """
input: {fill: arange, shape: [1, 2, 4, 5], start: 0, step: 1}
layers:
  - {type: conv, name: c, kernel: {fill: arange, start: -1, step: 0.25}, out_channels: 3, size: [2, 3], bias: {fill: linspace, start: -1, stop: 1}}
loss: {type: sum}
""",
    "loss-mean-batch": f"""
input: {lit(2, 6, seed=140)}
layers:
  - {{type: dense, name: d, weights: {{fill: linspace, start: -0.5, stop: 0.7, shape: [3, 6]}}, bias: {{fill: full, value: 0.2}}}}
  - {{type: tanh}}
loss: {{type: mean}}
""",
    "loss-l1-with-a-zero-difference": """
input: [[0.2, -0.5, 0.9], [0.7, 0.3, -0.8], [-0.6, 0.05, 0.35]]
layers:
  - {type: conv, name: c, kernel: [[1, 0], [0, 1]]}
loss: {type: l1, target: [[0.5, 0.1], [0.75, 0.2]]}
""",
    "upstream-single-number": f"""
input: {lit(4, 4, seed=141)}
layers:
  - {{type: conv, name: c, kernel: {{fill: ones, shape: [2, 2]}}}}
  - {{type: sigmoid}}
upstream: {{delta: 0.5}}
""",
    "train-sgd-momentum-2-steps-l2": f"""
input: {lit(4, 4, seed=142)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, seed=143)}, bias: 0.1}}
  - {{type: tanh}}
  - {{type: flatten}}
  - {{type: dense, name: d, weights: {lit(2, 9, seed=144)}, bias: [0.1, -0.2]}}
loss: {{type: mse, target: [0.3, -0.4]}}
regularization: {{l2: 0.05}}
optimizer: {{type: sgd, lr: 0.2, momentum: 0.9, dampening: 0.1}}
steps: 2
""",
    "train-sgd-nesterov-weight-decay-given-buffer": f"""
input: {lit(3, 5, seed=145)}
layers:
  - {{type: dense, name: d, weights: {lit(2, 5, seed=146)}, bias: [0.1, -0.2]}}
  - {{type: sigmoid}}
loss: {{type: bce, target: [[1, 0], [0, 1], [1, 1]]}}
optimizer: {{type: sgd, lr: 0.5, momentum: 0.8, nesterov: true, weight_decay: 0.01,
            state: {{d.weights: {{momentum_buffer: {lit(2, 5, seed=147)}}}}}}}
steps: 3
""",
    "train-adam-3-steps-given-state": f"""
input: {lit(4, 4, seed=148)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, seed=149)}, bias: 0.1}}
  - {{type: relu}}
  - {{type: avgpool, size: 3}}
loss: {{type: half_sse, target: 0.3}}
optimizer: {{type: adam, lr: 0.01, betas: [0.8, 0.95], eps: 0.001,
            state: {{c.kernel: {{exp_avg: {{fill: full, value: 0.1}}, exp_avg_sq: 0.02, step: 4}}}}}}
steps: 3
""",
    "train-adam-weight-decay-rounded-forward-backward": f"""
input: {lit(4, 4, seed=150)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, seed=151)}}}
  - {{type: sigmoid}}
loss: {{type: sse, target: {lit(3, 3, seed=152)}}}
optimizer: {{type: adam, lr: 0.1, weight_decay: 0.3}}
rounding: {{decimals: 4, apply: [forward, backward]}}
steps: 2
""",
    "train-rmsprop-centered-momentum": f"""
input: {lit(2, 4, seed=153)}
layers:
  - {{type: dense, name: d, weights: {lit(3, 4, seed=154)}}}
  - {{type: softmax}}
loss: {{type: cross_entropy, target: [2, 0]}}
optimizer: {{type: rmsprop, lr: 0.05, alpha: 0.9, momentum: 0.5, centered: true, weight_decay: 0.1}}
steps: 3
""",
    "train-rmsprop-plain-given-square-avg": f"""
input: {lit(4, 4, seed=155)}
layers:
  - {{type: conv, name: c, kernel: {lit(3, 3, seed=156)}, bias: -0.1}}
loss: {{type: l1, target: {lit(2, 2, seed=157)}}}
optimizer: {{type: rmsprop, lr: 0.01, state: {{c.bias: {{square_avg: 0.5, step: 9}}}}}}
steps: 2
""",
    "train-adagrad-lr-decay-l2": f"""
input: {lit(4, 4, seed=158)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, seed=159)}, bias: 0.1}}
  - {{type: flatten}}
  - {{type: dense, name: d, weights: {lit(1, 9, seed=160)}}}
loss: {{type: mean}}
regularization: {{l2: 0.2}}
optimizer: {{type: adagrad, lr: 0.1, lr_decay: 0.5, initial_accumulator_value: 0.1, eps: 1e-6,
            state: {{d.weights: {{sum: {{fill: linspace, start: 0, stop: 1}}, step: 1}}}}}}
steps: 3
""",
    "train-learning-rate-3-steps-rounded": f"""
input: {lit(4, 4, seed=161)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, seed=162)}, bias: 0.1}}
  - {{type: maxpool, size: 3}}
loss: {{type: half_sse, target: 0.5}}
learning_rate: 0.3
rounding: {{decimals: 3}}
steps: 3
""",
    # --- issue 10's own examples, written as its newcomer would: fills, dilation, the sum loss
    "issue-10-conv-and-avgpool-filled-sum": """
input: {fill: arange, shape: [1, 2, 5, 6]}
layers:
  - {type: conv, name: c, kernel: {fill: arange, start: 0, step: 0.1}, out_channels: 3, size: [2, 3], padding: [1, 2], stride: [1, 2], dilation: [2, 3], bias: {fill: linspace, start: -1, stop: 1}}
  - {type: avgpool, name: p, size: [3, 4], stride: [1, 2], padding: [1, 2], count_include_pad: false, from: input}
  - {type: flatten, name: fc, from: c}
  - {type: flatten, name: fp, from: p}
  - {type: concat, name: k, from: [fc, fp]}
loss: {type: sum}
""",
    # --- conv dilation, bias: false, conv_transpose, pooling options, global pools, upsample ---
    "conv-dilation-issue-10": f"""
input: {arange(1, 2, 5, 6)}
layers:
  - {{type: conv, name: c, kernel: {arange(3, 2, 2, 3)}, stride: [1, 2], padding: [1, 2], dilation: [2, 3]}}
upstream: {{delta: {json.dumps(np.ones((3, 5, 2)).tolist())}}}
""",
    "conv-dilation-groups-convolution-no-bias": f"""
conventions: {{kernel: convolution}}
input: {lit(2, 4, 6, 6, seed=140)}
layers:
  - {{type: conv, name: c1, kernel: {lit(4, 2, 2, 2, seed=141)}, groups: 2, dilation: 2, padding: 1, bias: false}}
  - {{type: tanh}}
  - {{type: conv, name: c2, kernel: {lit(2, 4, 3, 2, seed=142)}, dilation: [1, 2], stride: 2, bias: [0.1, -0.1]}}
loss: {{type: mse, target: {lit(2, 2, 2, 2, seed=143)}}}
learning_rate: 0.1
""",
    "conv-dilation-signal-1d": """
input: [0.1, 0.5, -0.3, 0.8, 0.2, -0.6, 0.4, 0.9, -0.2]
layers:
  - {type: conv, kernel: [0.5, -1.0, 0.25], dilation: 3, padding: 1, bias: 0.1}
  - {type: sigmoid}
loss: {type: half_sse, target: [0.1, 0.2, 0.3, 0.4, 0.5]}
""",
    "dense-no-bias": f"""
input: {lit(3, 4, seed=144)}
layers:
  - {{type: dense, name: d1, weights: {lit(3, 4, seed=145)}, bias: false}}
  - {{type: relu}}
  - {{type: dense, name: d2, weights: {lit(2, 3, seed=146)}, bias: false}}
loss: {{type: half_sse, target: {lit(3, 2, seed=147)}}}
learning_rate: 0.5
""",
    "conv-transpose-d2l-stride-2": """
input: [[0, 1], [2, 3]]
layers:
  - {type: conv_transpose, name: t, kernel: [[0, 1], [2, 3]], stride: 2, bias: false}
upstream: {delta: [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]}
""",
    "conv-transpose-every-option": f"""
input: {lit(2, 2, 3, 3, seed=150)}
layers:
  - {{type: conv_transpose, name: t, kernel: {lit(2, 3, 3, 2, seed=151)}, bias: [0.1, -0.2, 0.3], stride: [2, 1],
     padding: 1, output_padding: [1, 0], dilation: [1, 2]}}
  - {{type: sigmoid}}
  - {{type: conv, kernel: {lit(1, 3, 2, 2, seed=152)}}}
loss: {{type: sse, target: {lit(2, 1, 5, 2, seed=153)}}}
learning_rate: 0.1
""",
    "conv-transpose-groups-convolution": f"""
conventions: {{kernel: convolution, index_base: 1}}
input: {lit(1, 4, 3, 4, seed=154)}
layers:
  - {{type: conv_transpose, name: t, kernel: {lit(4, 1, 2, 3, seed=155)}, groups: 2, dilation: 2, output_padding: 1,
     bias: false}}
  - {{type: relu}}
  - {{type: conv_transpose, name: t2, kernel: {lit(2, 2, 2, seed=156)}, stride: 2, padding: [1, 0]}}
upstream: {{delta: {lit(10, 18, seed=157)}}}
""",
    "conv-transpose-init-signal": """
input: [0.3, -0.1, 0.7, 0.2]
init: {scheme: glorot_uniform, seed: 4}
layers:
  - {type: conv_transpose, name: t, out_channels: 2, size: 3, stride: 2, padding: 1, output_padding: 1}
  - {type: global_avgpool, name: g}
loss: {type: half_sse, target: [0.5, -0.5]}
""",
    "maxpool-ceil-dilation": f"""
input: {lit(2, 2, 6, 7, seed=160)}
layers:
  - {{type: maxpool, name: p1, size: 3, stride: 2, padding: 1, dilation: [2, 1], ceil_mode: true}}
  - {{type: maxpool, name: p2, size: 2, ceil_mode: true}}
loss: {{type: half_sse, target: {lit(2, 2, 2, 2, seed=161)}}}
""",
    "avgpool-count-include-pad-false-issue-10": f"""
input: {lit(1, 2, 5, 7, seed=162)}
layers:
  - {{type: avgpool, name: p, size: [3, 4], stride: [1, 2], padding: [1, 2], count_include_pad: false}}
loss: {{type: mse, target: {lit(1, 2, 5, 4, seed=163)}}}
""",
    "avgpool-ceil-mode-divisors": f"""
input: {lit(2, 1, 6, 5, seed=164)}
layers:
  - {{type: avgpool, name: p1, size: 3, stride: 2, padding: 1, ceil_mode: true}}
  - {{type: avgpool, name: p2, size: 2, stride: 2, ceil_mode: true, count_include_pad: false}}
  - {{type: avgpool, name: p3, size: [2, 1], stride: 1, padding: [1, 0], ceil_mode: true, count_include_pad: false}}
upstream: {{delta: {lit(2, 1, 3, 2, seed=165)}}}
""",
    "global-pools-dense": f"""
input: {lit(2, 3, 3, 4, seed=166)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 3, 2, 2, seed=167)}}}
  - {{type: global_maxpool, name: gm}}
  - {{type: global_avgpool, name: ga, from: c}}
  - {{type: concat, name: k, from: [gm, ga]}}
  - {{type: dense, name: d, weights: {lit(3, 4, seed=168)}}}
loss: {{type: cross_entropy, target: [1, 2]}}
""",
    "upsample-scales": f"""
input: {lit(2, 2, 2, 3, seed=170)}
layers:
  - {{type: upsample, name: u1, scale: 2}}
  - {{type: conv, kernel: {lit(1, 2, 2, 2, seed=171)}}}
  - {{type: upsample, name: u2, scale: [1, 3]}}
loss: {{type: half_sse, target: {lit(2, 3, 15, seed=172)}}}
""",
    # --- normalisation and dropout (inner values mean, var, xhat and their deltas; mask) ------
    "batchnorm-dense-train": f"""
input: {lit(4, 3, seed=200)}
layers:
  - {{type: dense, name: h, weights: {lit(3, 3, seed=201)}, bias: [0.1, -0.2, 0.3]}}
  - {{type: batchnorm, name: bn, gamma: [1.5, 0.5, -0.8], beta: [0.1, -0.2, 0.05]}}
  - {{type: tanh, name: t}}
  - {{type: dense, name: o, weights: {lit(2, 3, seed=202)}}}
loss: {{type: mse, target: {lit(4, 2, seed=203)}}}
learning_rate: 0.1
""",
    "batchnorm-maps-train-relu": f"""
input: {lit(2, 2, 4, 4, seed=204)}
layers:
  - {{type: conv, name: c, kernel: {lit(3, 2, 2, 2, seed=205)}, bias: [0.1, 0.0, -0.1]}}
  - {{type: batchnorm, name: bn, gamma: [1.2, 0.7, 1.0], beta: [0.0, 0.3, -0.1], eps: 0.001}}
  - {{type: relu, name: r}}
  - {{type: maxpool, name: p, size: 3}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: o, weights: {lit(2, 3, seed=206)}}}
loss: {{type: cross_entropy, target: [0, 1]}}
""",
    "batchnorm-maps-eval": f"""
input: {lit(2, 2, 3, 3, seed=207)}
layers:
  - {{type: batchnorm, name: bn, mode: eval, gamma: [0.9, 1.1], beta: [0.2, -0.1], running_mean: [0.05, -0.1],
      running_var: [0.8, 1.3]}}
  - {{type: sigmoid, name: s}}
  - {{type: conv, name: c, kernel: {lit(1, 2, 2, 2, seed=208)}}}
loss: {{type: half_sse, target: {lit(2, 1, 2, 2, seed=209)}}}
""",
    "batchnorm-given-mean-rounded-var": """
input: [[0.2, 1.0], [0.6, -0.5], [1.3, 0.4]]
layers:
  - {type: batchnorm, name: bn, gamma: [2.0, 0.5]}
  - {type: sigmoid, name: s}
loss: {type: half_sse, target: [[1, 0], [0, 1], [1, 1]]}
given: {bn.mean: [0.75, 0.25]}
rounding: {decimals: 4, mode: half_up, apply: [bn.var, bn.xhat.delta, bn.mean.delta]}
""",
    "layernorm-maps": f"""
input: {lit(2, 2, 3, 3, seed=210)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 2, 2, 2, seed=211)}, padding: 1}}
  - {{type: layernorm, name: ln, gamma: {lit(2, 4, 4, seed=212, low=0.5, high=1.5)}, beta: {lit(2, 4, 4, seed=213)}}}
  - {{type: relu}}
  - {{type: avgpool, size: 2}}
upstream: {{delta: {lit(2, 2, 2, 2, seed=214)}}}
""",
    "layernorm-dense-defaults": f"""
input: {lit(3, 5, seed=215)}
layers:
  - {{type: layernorm, name: ln}}
  - {{type: dense, name: o, weights: {lit(2, 5, seed=216)}}}
loss: {{type: sse, target: {lit(3, 2, seed=217)}}}
""",
    "dropout-mask-and-seed": f"""
input: {lit(2, 1, 3, 3, seed=218)}
layers:
  - {{type: conv, name: c, kernel: {lit(2, 1, 2, 2, seed=219)}}}
  - {{type: dropout, name: d, p: 0.25, mask: [[[[1, 0], [1, 1]], [[0, 1], [1, 1]]], [[[1, 1], [0, 1]], [[1, 1], [1, 0]]]]}}
  - {{type: flatten, name: f}}
  - {{type: dropout, name: d2, p: 0.4, seed: 3}}
  - {{type: dense, name: o, weights: {lit(1, 8, seed=220)}}}
loss: {{type: half_sse, target: [[0.5], [-0.5]]}}
learning_rate: 0.05
""",
    # --- smooth element-wise functions ------------------------------------------------------
    "exp-log-square": f"""
input: {lit(2, 4, seed=230)}
layers:
  - {{type: dense, name: h, weights: {lit(4, 4, seed=231)}}}
  - {{type: exp, name: e}}
  - {{type: log, name: l}}
  - {{type: square, name: q}}
  - {{type: dense, name: o, weights: {lit(2, 4, seed=232)}}}
loss: {{type: mse, target: {lit(2, 2, seed=233)}}}
""",
    "elu-softplus-silu-gelu-maps": f"""
input: {lit(1, 2, 4, 4, seed=234, low=-3, high=3)}
layers:
  - {{type: elu, name: e, alpha: 0.7}}
  - {{type: conv, name: c, kernel: {lit(2, 2, 2, 2, seed=235, low=-4, high=4)}}}
  - {{type: softplus, name: sp}}
  - {{type: gelu, name: g, from: c}}
  - {{type: silu, name: si, from: c}}
  - {{type: add, name: a, from: [sp, g, si]}}
upstream: {{delta: {lit(1, 2, 3, 3, seed=236)}}}
""",
    "softplus-threshold-elu-zero": """
input: [[25.0, 20.0, 19.5, -30.0, 0.0, -0.5]]
layers:
  - {type: softplus, name: sp}
  - {type: elu, name: e, from: input, alpha: 0.5}
  - {type: multiply, name: m, from: [sp, e]}
upstream: {delta: [[1.0, -2.0, 0.5, 3.0, 1.5, -1.0]]}
""",
}


def agree(scenario, trace) -> int:
    """Compare the trace, and its JSON export, with every oracle that applies; the number
    of values compared."""
    exported = render_json(trace)
    compared = 0
    if not scenario.given and not scenario.rounding:
        whole = oracle.global_values(scenario)
        compared += oracle.check(trace, whole)
        oracle.check_json(exported, whole)
    local = oracle.local_values(scenario, trace)
    compared += oracle.check(trace, local, use_computed=True)
    oracle.check_json(exported, local, use_computed=True)
    oracle.check_pinned(scenario, trace)
    return compared


@pytest.mark.parametrize("text", list(CASES.values()), ids=list(CASES))
def test_case_agrees_with_torch(torch, text):
    scenario = bptrace.loads(text)
    assert agree(scenario, bptrace.run(scenario)) > 0


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_shipped_scenario_agrees_with_torch(torch, path):
    scenario = bptrace.load(path)
    assert agree(scenario, bptrace.run(scenario)) > 0


def test_global_oracle_agrees_where_given_changes_nothing(torch):
    """seed001 without its `given` is an ordinary network: the whole-network oracle applies."""
    scenario = bptrace.load(Path(__file__).resolve().parent.parent / "scenarios" / "seed001.yaml")
    assert scenario.given
    scenario.given = {}
    oracle.check(bptrace.run(scenario), oracle.global_values(scenario))


def test_cases_cover_every_layer_loss_and_convention():
    """The cases above are the coverage claim; keep it true when layers or losses are added."""
    scenarios = [bptrace.loads(text) for text in CASES.values()]
    layer_types = {layer.type for sc in scenarios for layer in sc.layers}
    assert layer_types == set(LAYERS)
    assert {sc.loss.type for sc in scenarios if sc.loss} == set(LOSS_TYPES)
    assert {sc.conventions.kernel for sc in scenarios} == {"correlation", "convolution"}
    assert {sc.conventions.flatten for sc in scenarios
            if any(layer.type == "flatten" for layer in sc.layers)} == {"row", "column"}
    convs = [layer for sc in scenarios for layer in sc.layers if layer.type == "conv"]
    assert any(layer.stride[0] != layer.stride[1] for layer in convs)
    assert any(layer.padding[0] != layer.padding[1] for layer in convs)
    assert any(layer.groups == layer.in_shape[1] > 1 for layer in convs)          # depthwise
    assert any(1 < layer.groups < layer.in_shape[1] for layer in convs)
    assert any(layer.dilation[0] != layer.dilation[1] for layer in convs)
    assert any(layer.dilation != (1, 1) and layer.flip for layer in convs)
    assert any(layer.dilation != (1, 1) and layer.in_shape[2] == 1 for layer in convs)          # 1-D signal
    assert any("bias" not in layer.params for layer in convs)
    assert any("bias" not in layer.params for sc in scenarios for layer in sc.layers if layer.type == "dense")
    transposed = [layer for sc in scenarios for layer in sc.layers if layer.type == "conv_transpose"]
    for option in ("stride", "padding", "output_padding", "dilation"):
        assert any(len(set(getattr(layer, option))) > 1 for layer in transposed), option
    assert any(layer.groups > 1 for layer in transposed) and any(layer.flip for layer in transposed)
    assert any("bias" not in layer.params for layer in transposed) and any("bias" in layer.params for layer in transposed)
    pools = [layer for sc in scenarios for layer in sc.layers if layer.type.endswith("pool")]
    assert any(layer.stride[1] < layer.size[1] for layer in pools)                # overlapping
    assert any(any(layer.padding) for layer in pools if layer.type == "maxpool")
    assert any(any(layer.padding) for layer in pools if layer.type == "avgpool")
    assert any(layer.ceil_mode for layer in pools if layer.type == "maxpool")
    assert any(layer.dilation != (1, 1) for layer in pools if layer.type == "maxpool")
    averages = [layer for layer in pools if layer.type == "avgpool"]
    assert any(layer.ceil_mode and not layer.uniform and layer.count_include_pad for layer in averages)
    assert any(layer.ceil_mode and not layer.count_include_pad for layer in averages)
    assert any(not layer.count_include_pad and any(layer.padding) for layer in averages)
    assert any(sc.input.shape[0] > 1 for sc in scenarios)                         # batches
    assert any(sc.input.ndim == 4 and sc.input.shape[2] == 1 for sc in scenarios)  # 1-D signals
    ce = [sc.loss for sc in scenarios if sc.loss and sc.loss.type == "cross_entropy"]
    assert any(loss.classes is not None for loss in ce) and any(loss.classes is None for loss in ce)
    upstream = [sc for sc in scenarios if sc.upstream]
    assert any(sc.upstream.layer == sc.layers[-1].name for sc in upstream)
    assert any(sc.upstream.layer != sc.layers[-1].name for sc in upstream)
    assert any(sc.learning_rate for sc in scenarios) and any(sc.given for sc in scenarios)
    assert {sc.rounding.mode for sc in scenarios if sc.rounding} == {"half_up", "half_even", "truncate"}
    # training: every torch.optim type, given state, several steps, L2 in the loss
    assert {sc.optimizer.type for sc in scenarios if sc.optimizer} == {"sgd", "adam", "rmsprop", "adagrad"}
    assert any(sc.optimizer.state for sc in scenarios if sc.optimizer)
    assert any(sc.steps > 1 and sc.learning_rate for sc in scenarios)
    assert any(sc.regularization and sc.optimizer for sc in scenarios)


def test_init_and_random_input_follow_the_brief():
    """glorot_uniform: default_rng(seed), layer by layer, each tensor in canonical shape,
    bounds ±sqrt(6/(fan_in+fan_out)) with fan = channels × kernel area; biases 0.  A random
    input: default_rng(seed).uniform(low, high, shape)."""
    scenario = bptrace.loads(CASES["init-glorot-random-input"])
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(8, 8))
    assert np.array_equal(scenario.input.reshape(8, 8), x)
    rng = np.random.default_rng(0)
    shapes = {"C1": ((2, 1, 3, 3), 1 * 9, 2 * 9), "C2": ((3, 2, 2, 2), 2 * 4, 3 * 4), "F": ((4, 12), 12, 4)}
    for name, (shape, fan_in, fan_out) in shapes.items():
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        drawn = rng.uniform(-bound, bound, size=shape)
        params = scenario.layer(name).params
        role = "weights" if name == "F" else "kernel"
        assert np.array_equal(params[role], drawn), name
        assert np.array_equal(params["bias"], np.zeros(shape[0])), name

