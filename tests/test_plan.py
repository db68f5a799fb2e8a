"""The network plan (bptrace/plan.py): the wiring, which values get deltas and when, and,
as a property, random graphs (skip connections, concat, products, a value read twice)
against the whole-network PyTorch oracle, whose wiring comes from the file's `from:` keys.
"""
from __future__ import annotations

import json
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bptrace
import oracle
from bptrace.explain import explain
from test_properties import NORMS, norm_layer

RESIDUAL = """
input: [[0.2, -0.5, 0.9], [0.7, 0.3, -0.8], [-0.6, 0.05, 0.35]]
layers:
  - {type: conv, name: c1, kernel: [[0.1, -0.2], [0.3, 0.4]], padding: 1}
  - {type: relu, name: r1}
  - {type: conv, name: c2, kernel: [[0.5, 0.1], [-0.3, 0.2]]}
  - {type: add, name: skip, from: [c2, input]}
  - {type: flatten, name: f}
  - {type: dense, name: h, weights: [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]]}
  - {type: sigmoid, name: after}
  - {type: dense, name: side, from: f, out: 2}
init: {seed: 3}
output: h
loss: {type: half_sse, target: [1]}
"""


def test_a_chain_is_the_layers_list():
    scenario = bptrace.load("scenarios/seed001.yaml")
    plan = scenario.plan
    assert [node.name for node in plan.nodes] == [layer.name for layer in scenario.layers]
    assert [v.out for node in plan.nodes for v in node.reads] == ["input", "c1.out", "p1.out", "s1.out", "f.out"]
    assert plan.active == plan.nodes and plan.output == "h"
    # in a chain each delta is finished by the one layer that reads the value
    assert [[v.delta for v in plan.completes(node)] for node in plan.nodes] == [
        ["input.delta"], ["c1.delta"], ["p1.delta"], ["s1.delta"], ["f.delta"]]


def test_a_value_read_twice_is_finished_by_its_first_reader():
    scenario = bptrace.loads(RESIDUAL)
    plan = scenario.plan
    assert [node.name for node in plan.readers["input"]] == ["c1", "skip"]
    assert [v.name for v in plan.completes(plan.node("c1"))] == ["input"]
    assert plan.completes(plan.node("skip")) == [plan.value("c2")]
    # the loss reads h: `after` and `side` run forward only
    assert [node.name for node in plan.active] == ["c1", "r1", "c2", "skip", "f", "h"]
    assert not plan.reaches("side") and not plan.reaches("after")
    trace = bptrace.run(scenario)
    assert "side.out" in trace and "side.delta" not in trace and "side.grad.weights" not in trace
    step = trace["input.delta"]
    assert [part.layer for part in step.parts] == ["skip", "c1"]
    assert np.array_equal(step.values, step.parts[0].values + step.parts[1].values)
    # the order of the trace is the order the shapes were worked out in
    assert trace.names() == list(scenario.shapes)


def test_explain_shows_each_readers_contribution():
    scenario = bptrace.loads(RESIDUAL)
    explanation = explain(scenario, "input.delta[1,1]")
    assert [c.layer for c in explanation.contributions] == ["skip", "c1"]
    assert sum(c.value for c in explanation.contributions) == explanation.total
    assert abs(explanation.terms[-1].running - explanation.total) < 1e-15


def test_unrolled_compares_with_its_own_share_of_a_summed_delta():
    from bptrace.unrolled import unroll
    scenario = bptrace.loads(RESIDUAL)
    unrolled = unroll(scenario, bptrace.run(scenario), "c1")
    assert all(check.x_delta_agree for check in unrolled.checks)


# --- random graphs against PyTorch -------------------------------------------------------------

def numbers(rng, *shape, low=-1.0, high=1.0):
    return json.dumps(np.round(rng.uniform(low, high, size=shape), 4).tolist())


@st.composite
def graphs(draw):
    """A small network of maps where layers may read any earlier value: convs and
    activations (smooth ones, batch norm in train or eval mode, layer norm, dropout masks
    among them), add / multiply (same shape) and concat (same size) of earlier values,
    possibly the same value twice, then a dense head or a loss on a map."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    N, C, H, W = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(2, 5)), draw(st.integers(2, 5))
    lines = [f"input: {numbers(rng, N, C, H, W)}", "layers:"]
    values = [("input", (N, C, H, W))]

    def add(keys, reads, shape):
        name = f"l{len(values)}"
        source = f", from: [{', '.join(reads)}]" if len(reads) > 1 else f", from: {reads[0]}"
        lines.append(f"  - {{name: {name}, {keys}{source}}}")
        values.append((name, shape))

    for _ in range(draw(st.integers(2, 6))):
        name, shape = draw(st.sampled_from(values))
        n, c, h, w = shape
        kind = draw(st.sampled_from(["conv", "act", "add", "multiply", "concat"]))
        if kind == "conv":
            out = draw(st.integers(1, 2))
            kh, kw = draw(st.integers(1, min(2, h + 2))), draw(st.integers(1, min(2, w + 2)))
            pad = draw(st.integers(0, 1))
            kh, kw = min(kh, h + 2 * pad), min(kw, w + 2 * pad)
            add(f"type: conv, kernel: {numbers(rng, out, c, kh, kw)}, bias: {numbers(rng, out)}, padding: [{pad}, {pad}]",
                [name], (n, out, h + 2 * pad - kh + 1, w + 2 * pad - kw + 1))
        elif kind == "act":
            # the smooth functions and the norms where the activations were: as many layers as before
            act = draw(st.sampled_from(["tanh", "sigmoid", "identity", "exp", "square", "elu", "softplus", "silu",
                                        "gelu", "batchnorm", "batchnorm", "layernorm", "dropout"]))
            if act == "exp" and any("type: exp" in line for line in lines):
                act = "softplus"         # one exp per network: exp of a sum of exps overflows
            add(norm_layer(draw, rng, shape, act) if act in NORMS else f"type: {act}", [name], shape)
        elif kind in ("add", "multiply"):
            same = [v for v, s in values if s == shape]
            others = draw(st.lists(st.sampled_from(same), min_size=1, max_size=2))
            add(f"type: {kind}", [name] + others, shape)
        else:
            fits = [(v, s) for v, s in values if (s[0], s[2], s[3]) == (n, h, w)]
            other, other_shape = draw(st.sampled_from(fits))
            add("type: concat", [name, other], (n, c + other_shape[1], h, w))
    last, shape = values[-1]
    if draw(st.booleans()):
        features = int(np.prod(shape[1:]))
        add("type: flatten", [last], (shape[0], features))
        add(f"type: dense, weights: {numbers(rng, 2, features)}", [values[-1][0]], (shape[0], 2))
        shape = values[-1][1]
    lines.append(f"loss: {{type: half_sse, target: {numbers(rng, *shape)}}}")
    if draw(st.booleans()):
        lines.append("learning_rate: 0.1")
    return "\n".join(lines) + "\n"


@settings(max_examples=int(os.environ.get("BPTRACE_GRAPH_EXAMPLES", 40)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=graphs())
def test_random_graphs_agree_with_torch(torch, text):
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    assert trace.names() == list(scenario.shapes)
    oracle.check(trace, oracle.global_values(scenario))
