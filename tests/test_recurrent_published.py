"""Published numbers of a recurrent network's backward pass: deeplearning.ai's "Building
your Recurrent Neural Network - Step by Step" (scenarios/rnn_deeplearning_ai.yaml and
lstm_deeplearning_ai.yaml, whose headers cite the copies read).

The scenarios write out the numbers the assignment's test cells draw after
np.random.seed(1); these tests draw them again with numpy and compare, so that every
number of the scenario is the source's, then check the printed backward numbers (also run,
with every shipped scenario, by tests/test_scenarios.py and against PyTorch by
tests/test_oracle_torch.py)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

import bptrace
from bptrace.check import Checker, scenario_answers


def load(name):
    return bptrace.load(ROOT / "scenarios" / name)


def test_the_rnn_scenario_holds_the_notebooks_draws():
    rng = np.random.RandomState(1)          # np.random.seed(1), as the test cell
    x, a0 = rng.randn(3, 10, 4), rng.randn(5, 10)
    Wax, Waa = rng.randn(5, 3), rng.randn(5, 5)
    rng.randn(2, 5)                          # Wya: the cell draws it, the backward never reads it
    ba = rng.randn(5, 1)
    rng.randn(2, 1)                          # by
    da = rng.randn(5, 10, 4)
    scenario = load("rnn_deeplearning_ai.yaml")
    layer = scenario.layer("L")
    np.testing.assert_array_equal(scenario.input.reshape(10, 4, 3), x.transpose(1, 2, 0))
    np.testing.assert_array_equal(layer.params["weight_ih"], Wax)
    np.testing.assert_array_equal(layer.params["weight_hh"], Waa)
    np.testing.assert_array_equal(layer.params["bias_ih"], ba[:, 0])
    np.testing.assert_array_equal(layer.params["bias_hh"], np.zeros(5))
    np.testing.assert_array_equal(np.array(layer.h0), a0.T)
    np.testing.assert_array_equal(np.asarray(scenario.upstream.delta).reshape(10, 4, 5), da.transpose(1, 2, 0))


def test_the_lstm_scenario_holds_the_notebooks_draws():
    rng = np.random.RandomState(1)
    x, a0 = rng.randn(3, 10, 7), rng.randn(5, 10)
    drawn = {key: rng.randn(5, 8) if key[0] == "W" else rng.randn(5, 1)
             for key in ("Wf", "bf", "Wi", "bi", "Wo", "bo", "Wc", "bc")}
    da = rng.randn(5, 10, 4)
    scenario = load("lstm_deeplearning_ai.yaml")
    layer = scenario.layer("L")
    gates = ("i", "f", "c", "o")             # PyTorch's blocks i, f, g, o: the notebook's Γ_u, Γ_f, c̃, Γ_o
    np.testing.assert_array_equal(scenario.input.reshape(10, 4, 3), x[:, :, :4].transpose(1, 2, 0))
    np.testing.assert_array_equal(layer.params["weight_hh"], np.vstack([drawn["W" + g][:, :5] for g in gates]))
    np.testing.assert_array_equal(layer.params["weight_ih"], np.vstack([drawn["W" + g][:, 5:] for g in gates]))
    np.testing.assert_array_equal(layer.params["bias_ih"], np.concatenate([drawn["b" + g][:, 0] for g in gates]))
    np.testing.assert_array_equal(np.array(layer.h0), a0.T)
    np.testing.assert_array_equal(np.array(layer.c0), np.zeros((10, 5)))
    np.testing.assert_array_equal(np.asarray(scenario.upstream.delta).reshape(10, 4, 5), da.transpose(1, 2, 0))


@pytest.mark.parametrize("name, count", [("rnn_deeplearning_ai.yaml", 7), ("lstm_deeplearning_ai.yaml", 12)])
def test_every_printed_backward_number_is_reproduced(name, count):
    scenario = load(name)
    answers = scenario_answers(scenario)
    report = Checker().check(scenario, answers, file=name, scenario_path=name)
    assert len(report.rows) == count
    assert report.error is None and not report.failed and report.passed == count
