"""bptrace/numbers.py and `arithmetic: exact`: the same loops on fractions.

Oracles: the float engine (which the torch and finite-difference suites check) to 1e-12 on
every scenario exact arithmetic accepts, seed 001's numbers as its source prints them
(exact decimals), and `fractions`/`decimal` arithmetic written here.
"""
from __future__ import annotations

import contextlib
import json
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, SCENARIOS
from hypothesis import given, settings
from hypothesis import strategies as st

import bptrace
from bptrace.cli import main
from bptrace.errors import ScenarioError
from bptrace.numbers import EXACT, NotExact, exact_text, round_exact, written_fraction
from bptrace.scenario import load, loads

# what has no exact value in general: these layer types, losses, optimizers and formula
# functions (exact arithmetic refuses a scenario only where one of them is)
TRANSCENDENTAL = ("sigmoid", "tanh", "softmax", "exp", "log", "softplus", "silu", "gelu", "elu", "rnn", "lstm",
                  "gru", "batchnorm", "layernorm", "cross_entropy", "bce", "adam", "rmsprop", "adagrad", "sqrt")


def _agree(exact, floats, tol=1e-12):
    assert [s.name for s in exact.steps] == [s.name for s in floats.steps]
    for a, b in zip(exact.steps, floats.steps):
        assert a.exact is not None and b.exact is None
        assert all(type(v) in (Fraction, int) for v in a.exact.reshape(-1).tolist()), a.name
        np.testing.assert_allclose(a.values, b.values, rtol=tol, atol=tol, err_msg=a.name)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_exact_arithmetic_equals_float_arithmetic_on_every_shipped_scenario_it_accepts(path):
    with contextlib.chdir(ROOT):
        floats = bptrace.run(f"scenarios/{path.name}")
        try:
            exact = bptrace.run(f"scenarios/{path.name}", arithmetic="exact")
        except ScenarioError as refused:
            assert "cannot be computed exactly" in str(refused)
            assert any(word in path.read_text() for word in TRANSCENDENTAL), path.name
            return
        _agree(exact, floats)


def test_seed001_runs_exactly_with_its_pinned_sigmoid_outputs():
    # the source prints these four deltas; on fractions they are exactly its decimals
    trace = bptrace.run(ROOT / "scenarios/seed001.yaml", arithmetic="exact")
    printed = [["0.0364182", "0.068628"], ["0.04675125", "-0.06818625"]]
    assert trace["p1.delta"].exact.reshape(2, 2).tolist() == [[Fraction(t) for t in row] for row in printed]
    assert trace.arithmetic == "exact"


def test_every_written_number_is_the_decimal_it_is_written_as():
    text = "input: [0.1, 0.2]\nlayers: [{type: dense, name: d, weights: [[0.1, 0.2]]}]\nupstream: {delta: [1]}\n"
    out = bptrace.run(loads("arithmetic: exact\n" + text))["d.out"].exact.reshape(-1)[0]
    assert out == Fraction(1, 10) ** 2 + Fraction(2, 10) ** 2 == Fraction(1, 20)
    # in floats the same sum is not 0.05
    assert bptrace.run(loads(text))["d.out"].values[0, 0] == 0.05000000000000001


def test_relu_decides_on_the_exact_value_where_large_terms_cancel():
    # 1e6 − 1e6 + 1e-9 is 1e-9 on paper: relu passes it (torch's float64 gives 1e-9 too)
    text = ("input: [1000000, 1000000, 0.000000001]\narithmetic: exact\n"
            "layers: [{type: dense, name: d, weights: [[1, -1, 1]], bias: 0}, {type: relu, name: r}]\n"
            "upstream: {delta: [1]}\n")
    trace = bptrace.run(loads(text))
    assert trace["r.out"].exact.reshape(-1)[0] == Fraction(1, 10 ** 9)
    assert trace["d.delta"].exact.reshape(-1)[0] == 1


def test_a_sigmoid_is_refused_with_its_layer_and_line_unless_its_outputs_are_given():
    text = ("arithmetic: exact\ninput: [0.5]\nlayers:\n  - {type: dense, name: d, weights: [[2]]}\n"
            "  - {type: sigmoid, name: s}\nloss: {type: half_sse, target: [1]}\n")
    with pytest.raises(ScenarioError) as refused:
        bptrace.run(loads(text, "net.yaml"))
    message = str(refused.value)
    assert "net.yaml:5" in message and "s (sigmoid)" in message and "exp" in message
    pinned = bptrace.run(loads(text + "given: {s.out: [[0.75]]}\n", "net.yaml"))
    # σ′ = out·(1 − out) from the pinned 3/4: (3/4 − 1)·3/4·1/4 exactly
    assert pinned["d.delta"].exact.reshape(-1)[0] == Fraction(-3, 64)


def test_sigmoid_of_zero_is_exact():
    sc = loads("arithmetic: exact\ninput: [0]\nlayers: [{type: sigmoid, name: s}]\nupstream: {delta: [1]}\n")
    trace = bptrace.run(sc)
    assert trace["s.out"].exact.reshape(-1)[0] == Fraction(1, 2)
    assert trace["input.delta"].exact.reshape(-1)[0] == Fraction(1, 4)


@pytest.mark.parametrize("gamma", ["0.1", "[0.1]"])
def test_eval_batch_norm_where_var_plus_eps_is_a_square_runs_exactly(gamma):
    # running_var + eps = 1: x̂ = x − running_mean, and every step is rational, backward too
    sc = loads("arithmetic: exact\ninput: [[0.5], [0.25]]\n"
               "layers: [{type: batchnorm, name: bn, mode: eval, running_mean: 0.5, running_var: 0.99999, "
               f"eps: 0.00001, gamma: {gamma}, beta: 0.3}}]\nupstream: {{delta: [[1], [1]]}}\n")
    trace = bptrace.run(sc)
    assert trace["bn.out"].exact.reshape(-1).tolist() == [Fraction(3, 10), Fraction(11, 40)]
    assert trace["input.delta"].exact.reshape(-1).tolist() == [Fraction(1, 10), Fraction(1, 10)]
    assert trace["bn.grad.gamma"].exact.reshape(-1).tolist() == [Fraction(-1, 4)]


def test_train_batch_norm_with_a_square_variance_runs_exactly():
    # x = [1, 3]: mean 2, var 1, eps 0, so √(var + eps) = 1 in the forward and backward loops
    sc = loads("arithmetic: exact\ninput: [[1], [3]]\nlayers: [{type: batchnorm, name: bn, eps: 0, gamma: 0.5}]\n"
               "loss: {type: half_sse, target: [[0], [2]]}\n")
    trace = bptrace.run(sc)
    assert trace["bn.out"].exact.reshape(-1).tolist() == [Fraction(-1, 2), Fraction(1, 2)]
    # delta = out − target = [−1/2, −3/2], x̂.delta = γ·delta = [−1/4, −3/4],
    # var.delta = Σ x̂.delta·(x − mean)·(−½)(var + eps)^(−3/2) = (1/4 − 3/4)·(−½) = 1/4
    assert trace["bn.var.delta"].exact.reshape(-1).tolist() == [Fraction(1, 4)]


def test_a_relu_rnn_runs_exactly_from_its_initial_state():
    # h0 = 0 (not written): h[0] = relu(0.5·1) = 1/2, h[1] = relu(0.5·2 + 0.5·1/2) = 5/4; with
    # loss `sum`, h.delta = [1 + 0.5·1, 1] = [3/2, 1], so grad W_ih = 3/2·1 + 1·2 = 7/2,
    # grad W_hh = 3/2·0 + 1·1/2 = 1/2, input.delta = 0.5·[3/2, 1] = [3/4, 1/2]
    sc = loads("arithmetic: exact\ninput: [[1], [2]]\nlayers:\n  - {type: rnn, name: r, hidden: 1, "
               "nonlinearity: relu, weight_ih: [[0.5]], weight_hh: [[0.5]], bias_ih: [0], bias_hh: [0]}\n"
               "loss: {type: sum}\n")
    trace = bptrace.run(sc)
    assert trace["r.out"].exact.reshape(-1).tolist() == [Fraction(1, 2), Fraction(5, 4)]
    assert trace["r.grad.weight_ih"].exact.reshape(-1).tolist() == [Fraction(7, 2)]
    assert trace["r.grad.weight_hh"].exact.reshape(-1).tolist() == [Fraction(1, 2)]
    assert trace["input.delta"].exact.reshape(-1).tolist() == [Fraction(3, 4), Fraction(1, 2)]


def test_elu_is_exact_at_zero_and_above():
    # elu(0) = α·(e⁰ − 1) = 0 and elu′(0) = out + α = α (PyTorch's side at 0); above 0 x and 1
    sc = loads("arithmetic: exact\ninput: [0, 0.5]\nlayers: [{type: elu, name: e, alpha: 0.5}]\n"
               "upstream: {delta: [1, 1]}\n")
    trace = bptrace.run(sc)
    assert trace["e.out"].exact.reshape(-1).tolist() == [0, Fraction(1, 2)]
    assert trace["input.delta"].exact.reshape(-1).tolist() == [Fraction(1, 2), 1]


def test_rounding_works_on_the_true_value():
    # 0.48·0.84 + 0.29·(−0.31) is 0.3133 on paper (0.31329999999999997 in floats): truncated
    # to 4 decimals it stays 0.3133
    text = ("arithmetic: exact\ninput: [0.84, -0.31]\nlayers: [{type: dense, name: d, weights: [[0.48, 0.29]]}]\n"
            "upstream: {delta: [1]}\nrounding: {decimals: 4, mode: truncate}\n")
    assert bptrace.run(loads(text))["d.out"].exact.reshape(-1)[0] == Fraction("0.3133")


@pytest.mark.parametrize("mode, rule", [("half_up", ROUND_HALF_UP), ("half_even", ROUND_HALF_EVEN),
                                        ("truncate", ROUND_DOWN)])
@given(numerator=st.integers(-10 ** 8, 10 ** 8), places=st.integers(0, 9), decimals=st.integers(0, 6))
@settings(max_examples=200, deadline=None)
def test_round_exact_is_decimal_rounding(mode, rule, numerator, places, decimals):
    q = Fraction(numerator, 10 ** places)
    expected = Decimal(numerator).scaleb(-places).quantize(Decimal(1).scaleb(-decimals), rounding=rule)
    assert round_exact(q, decimals, mode) == Fraction(expected)


def test_exact_text_writes_ending_decimals_whole_and_others_as_fractions():
    assert exact_text(Fraction(3, 8)) == "0.375"
    assert exact_text(Fraction(-1, 40)) == "-0.025"
    assert exact_text(Fraction(1, 3)) == "1/3"
    assert exact_text(Fraction(-7, 6)) == "-7/6"
    assert exact_text(Fraction(12)) == "12"
    assert exact_text(Fraction(1, 2 ** 30)) == format(Decimal(1) / Decimal(2 ** 30), "f")


def test_functions_are_exact_only_at_their_rational_points():
    assert EXACT.exp(Fraction(0)) == 1 and EXACT.log(Fraction(1)) == 0 and EXACT.tanh(Fraction(0)) == 0
    assert EXACT.sqrt(Fraction(9, 16)) == Fraction(3, 4)
    for function, argument in ((EXACT.exp, Fraction(1)), (EXACT.log, Fraction(2)), (EXACT.sqrt, Fraction(2)),
                               (EXACT.tanh, Fraction(1, 2)), (EXACT.sqrt, Fraction(-1))):
        with pytest.raises(NotExact):
            function(argument)


def test_written_fractions():
    assert written_fraction("3/8") == Fraction(3, 8) and written_fraction(" -1 / 3 ") == Fraction(-1, 3)
    assert written_fraction("3/0") is None and written_fraction("0.5") is None and written_fraction(3) is None


# --- random architectures without transcendental layers ----------------------------------------

def _decimals(rng, *shape):
    return np.round(rng.uniform(-1, 1, shape), 1).tolist()


@st.composite
def rational_networks(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    size = draw(st.integers(4, 6))
    lines = [f"input: {_decimals(rng, size, size)}", "arithmetic: exact", "layers:"]
    k = draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    lines.append(f"  - {{type: conv, name: c1, kernel: {_decimals(rng, k, k)}, bias: 0.1,"
                 f" stride: {stride}, padding: {padding}}}")
    out = (size + 2 * padding - k) // stride + 1
    lines.append(f"  - {{type: {draw(st.sampled_from(['relu', 'leaky_relu', 'identity']))}, name: a1}}")
    if out >= 2:
        lines.append(f"  - {{type: {draw(st.sampled_from(['maxpool', 'avgpool']))}, name: p1, size: 2, stride: 1}}")
        out -= 1
    lines.append("  - {type: flatten, name: f}")
    units = draw(st.integers(1, 3))
    lines.append(f"  - {{type: dense, name: h, weights: {_decimals(rng, units, out * out)}, "
                 f"bias: {_decimals(rng, units)}}}")
    loss = draw(st.sampled_from(["half_sse", "mse", "sse", "l1", "sum", "mean"]))
    target = "" if loss in ("sum", "mean") else f", target: {_decimals(rng, units)}"
    lines.append(f"loss: {{type: {loss}{target}}}")
    optimizer = draw(st.sampled_from(["learning_rate: 0.1", "optimizer: {type: sgd, lr: 0.5, momentum: 0.9, "
                                      "weight_decay: 0.01, nesterov: true}", ""]))
    if optimizer:
        lines.append(optimizer)
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None)
@given(text=rational_networks())
def test_random_rational_networks_agree_with_float_arithmetic(text):
    exact = bptrace.run(loads(text))
    floats = bptrace.run(loads(text.replace("arithmetic: exact\n", "")))
    _agree(exact, floats)


# --- the command line ----------------------------------------------------------------------------

def test_arithmetic_option_on_run_explain_and_check(tmp_path):
    runner = CliRunner()
    with contextlib.chdir(ROOT):
        shown = runner.invoke(main, ["run", "scenarios/seed001.yaml", "--arithmetic", "exact", "--only", "p1.delta"])
        assert shown.exit_code == 0, shown.output
        assert "exact arithmetic" in " ".join(shown.output.split()) and "0.0364182" in shown.output
        exported = runner.invoke(main, ["run", "scenarios/seed001.yaml", "--arithmetic", "exact", "--format", "json"])
        data = json.loads(exported.output)
        assert data["arithmetic"] == "exact"
        step = next(s for s in data["steps"] if s["name"] == "p1.delta")
        assert step["exact"] == [["0.0364182", "0.068628"], ["0.04675125", "-0.06818625"]]
        told = runner.invoke(main, ["explain", "scenarios/seed001.yaml", "p1.delta[0,0]", "--arithmetic", "exact"])
        assert told.exit_code == 0 and "0.0364182" in told.output
        refused = runner.invoke(main, ["run", "scenarios/zhang2016.yaml", "--arithmetic", "exact"])
        assert refused.exit_code == 2 and "sig1 (sigmoid)" in refused.output and "Traceback" not in refused.output
    sheet = tmp_path / "net.yaml"
    sheet.write_text("input: [1, 2, 3]\nlayers:\n  - {type: dense, name: d, weights: [[1, 1, 1]]}\n"
                     "  - {type: dense, name: e, weights: [[0.125]]}\nupstream: {delta: [1]}\n"
                     "expected: {e.out: 3/4}\n")
    right = runner.invoke(main, ["check", str(sheet), "--arithmetic", "exact"])
    assert right.exit_code == 0, right.output
    sheet.write_text(sheet.read_text().replace("3/4", "3/5"))
    wrong = runner.invoke(main, ["check", str(sheet), "--arithmetic", "exact"])
    assert wrong.exit_code == 1 and "3/5" in wrong.output


def test_the_file_names_its_arithmetic_and_a_bad_one_is_located():
    assert loads("arithmetic: exact\ninput: [1]\nlayers: [{type: relu}]\nupstream: {delta: [1]}\n").numbers is EXACT
    with pytest.raises(ScenarioError, match="line 1|:1:"):
        loads("arithmetic: decimal\ninput: [1]\nlayers: [{type: relu}]\nupstream: {delta: [1]}\n", "n.yaml")
    assert load(ROOT / "scenarios/seed001.yaml").numbers.name == "float"


def test_explain_shows_each_term_and_the_sum_as_fractions(tmp_path):
    text = ("arithmetic: exact\ninput: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]\n"
            "layers: [{type: avgpool, name: p, size: 3}]\nupstream: {delta: 1}\n")
    from bptrace.explain import explain
    told = explain(loads(text), "p.out")
    assert told.value == 5 and [term.product for term in told.terms][:2] == [Fraction(1, 9), Fraction(2, 9)]
    assert told.terms[1].running == Fraction(1, 3)
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    shown = CliRunner().invoke(main, ["explain", str(path), "input.delta[0,0]"])
    assert shown.exit_code == 0 and "input.delta[0,0] = 1/9" in shown.output and "0.111" not in shown.output


def test_a_huge_power_is_refused_in_exact_arithmetic_not_worked_out():
    # 1.5 ** 100000000 has some 17 million digits: refused at once, with its layer and line
    with pytest.raises(ScenarioError, match="too many digits"):
        bptrace.run(loads('arithmetic: exact\ninputs: {x: 1.5}\nnodes: {f: "x ** 100000000"}\n', "p.yaml"))
    assert bptrace.run(loads('arithmetic: exact\ninputs: {x: 1.5}\nnodes: {f: "x ** 3"}\n'))["f.out"].exact \
        .reshape(-1)[0] == Fraction(27, 8)


def test_explain_in_exact_arithmetic_writes_each_term_as_a_fraction():
    # a mean over 3 outputs: every delta is 1/3, and the weight gradient 1/3·1 — written as
    # the fraction it is, not as 0.3333333333 (the issue: "explain … each term as a fraction")
    scenario = loads("input: [[1, 0, 0]]\nlayers:\n  - {type: dense, name: h, weights: [[0.375, -0.5, 0], "
                     "[0.1, 0, 0], [1, 1, 1]], bias: [0, 0, 0]}\nloss: {type: mean}\n")
    trace = bptrace.run(scenario, arithmetic="exact")
    explained = trace.explain("h.grad.weights[0,0]")
    assert explained.total == Fraction(1, 3) and explained.value == Fraction(1, 3)
    assert [t.operands[0].value for t in explained.terms] == [Fraction(1, 3)]
    text = explained.to_text(width=100)
    assert "1/3" in text and "0.3333" not in text
    overview = trace.explain("h.delta").to_text(width=100)       # the whole step, laid out
    assert "1/3   1/3   1/3" in overview and "0.3333" not in overview
    # a value that rounding replaced keeps saying so
    rounded = loads("input: [[1, 0, 0]]\nlayers:\n  - {type: dense, name: h, weights: [[0.375, -0.5, 0], "
                    "[0.1, 0, 0], [1, 1, 1]], bias: [0, 0, 0]}\nloss: {type: mean}\n"
                    "rounding: {decimals: 2, mode: truncate, apply: [h.delta]}\n")
    told = bptrace.run(rounded, arithmetic="exact").explain("h.delta[0]")
    assert told.value == Fraction(33, 100) and told.replaced


def test_an_exact_value_too_long_to_write_is_a_located_refusal(tmp_path):
    # (1/2)^10000 has 10,000 decimals: writing it raised Python's ValueError (more than 4300
    # digits in one int's text), a traceback from every format; refused where it is computed
    sheet = tmp_path / "long.yaml"
    sheet.write_text("name: powers\ninputs: {x: 0.5}\nnodes:\n  f: x ** 100\n  g: f ** 100\n")
    out = tmp_path / "out.json"
    told = CliRunner().invoke(main, ["run", str(sheet), "--arithmetic", "exact", "--format", "json", "-o", str(out)])
    assert told.exit_code == 2 and "Traceback" not in told.output and not out.exists()
    assert "nodes.g" in told.output and "4,000 digits" in told.output and ":5:" in told.output
    assert bptrace.run(str(sheet), arithmetic="float")["g.out"].values == 0.5 ** 10000
    # (1/2)^100 is written whole
    sheet.write_text("name: powers\ninputs: {x: 0.5}\nnodes:\n  f: x ** 100\n")
    assert exact_text(bptrace.run(str(sheet), arithmetic="exact")["f.out"].exact.reshape(-1)[0]) == exact_text(Fraction(1, 2 ** 100))
