"""Batch norm, layer norm and dropout: the first layers that trace inner values through the
engine's `stage` callback.  Their numbers are checked against torch in test_oracle_torch.py
and by finite differences; here, what the stage mechanism promises: the names and their
order, and that a pinned or rounded inner value is what the rest of the layer uses."""
from __future__ import annotations

import numpy as np
import pytest

import bptrace

X = [[0.2, 1.0], [0.6, -0.5], [1.3, 0.4]]
BN = f"""
input: {X}
layers:
  - {{type: batchnorm, name: bn, gamma: [2.0, 0.5], beta: [0.1, 0.0]}}
  - {{type: sigmoid, name: s}}
loss: {{type: half_sse, target: [[1, 0], [0, 1], [1, 1]]}}
"""


def test_inner_values_are_traced_in_the_order_of_scenario_shapes():
    scenario = bptrace.loads(BN)
    trace = bptrace.run(scenario)
    assert trace.names() == list(scenario.shapes)
    names = trace.names()
    assert names[names.index("bn.beta") + 1:names.index("bn.out") + 1] == ["bn.mean", "bn.var", "bn.xhat", "bn.out"]
    assert names[names.index("bn.delta") + 1:] == ["bn.xhat.delta", "bn.var.delta", "bn.mean.delta", "bn.grad.gamma",
                                                   "bn.grad.beta", "input.delta"]
    assert trace["bn.mean"].shape == (2,) and trace["bn.xhat"].shape == (3, 2)


def test_a_given_mean_is_what_var_xhat_and_the_deltas_use():
    trace = bptrace.run(bptrace.loads(BN + "given: {bn.mean: [0.75, 0.25]}\n"))
    x, mean = np.array(X), np.array([0.75, 0.25])
    assert np.array_equal(trace.value("bn.mean"), mean)
    var = ((x - mean) ** 2).mean(axis=0)
    assert np.allclose(trace.value("bn.var"), var, rtol=1e-15)
    assert np.allclose(trace.value("bn.xhat"), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-14)
    assert np.allclose(trace["bn.var.delta"].values,
                       (trace.value("bn.xhat.delta") * (x - mean) * -0.5 * (var + 1e-5) ** -1.5).sum(axis=0))


def test_a_rounded_mean_is_what_the_rest_uses():
    trace = bptrace.run(bptrace.loads(BN + "rounding: {decimals: 1, mode: truncate, apply: [bn.mean]}\n"))
    mean = trace.value("bn.mean")
    assert np.array_equal(mean, [0.7, 0.3]) and trace["bn.mean"].rounded
    assert np.allclose(trace.value("bn.var"), ((np.array(X) - mean) ** 2).mean(axis=0), rtol=1e-15)


def test_eval_mode_has_no_statistics_deltas():
    trace = bptrace.run(bptrace.loads(BN.replace("beta: [0.1, 0.0]}", "beta: [0.1, 0.0], mode: eval, "
                                                                      "running_mean: [0.5, 0.1]}")))
    assert "bn.xhat.delta" in trace and "bn.mean.delta" not in trace and "bn.var.delta" not in trace
    assert np.array_equal(trace.value("bn.var"), [1.0, 1.0])
    assert np.allclose(trace.value("input.delta"), trace.value("bn.xhat.delta") / np.sqrt(1 + 1e-5))


def test_a_batch_norm_output_zero_on_paper_is_on_relus_flat_side():
    # mean of [0.1, 0.2, 0.3] is 0.20000000000000004 in floats: x̂[1] is −5e-17·... on paper 0;
    # with γ = −1 the output is a tiny positive number that relu must treat as 0
    trace = bptrace.run(bptrace.loads("""
input: [[0.1], [0.2], [0.3]]
layers:
  - {type: batchnorm, name: bn, gamma: -1}
  - {type: relu, name: r}
upstream: {delta: [[1], [1], [1]]}
"""))
    assert 0 < trace.value("bn.out")[1, 0] < 1e-15
    assert trace.value("r.out")[1, 0] == 0 and trace.value("bn.delta")[1, 0] == 0


def test_dropout_seed_and_p_one():
    trace = bptrace.run(bptrace.loads("""
input: [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
layers:
  - {type: dropout, name: d, p: 0.5, seed: 7}
  - {type: dropout, name: z, p: 1, seed: 0}
upstream: {delta: [[1, 1, 1, 1, 1, 1]]}
"""))
    mask = (np.random.default_rng(7).random((1, 6)) >= 0.5).astype(float)
    assert np.array_equal(trace.value("d.mask"), mask)
    assert np.array_equal(trace.value("d.out"), np.array([[1.0, 2, 3, 4, 5, 6]]) * mask * 2)
    assert not trace.value("z.out").any() and not trace.value("input.delta").any()


@pytest.mark.parametrize("kind, x", [("log", 0.0), ("log", -1.0)])
def test_log_of_zero_or_less_is_refused_naming_the_element(kind, x):
    from bptrace.errors import ScenarioError

    with pytest.raises(ScenarioError, match=r"element \[1\]"):
        bptrace.run(bptrace.loads(f"input: [1.0, {x}]\nlayers: [{{type: {kind}}}]\nupstream: {{delta: [1, 1]}}\n"))
