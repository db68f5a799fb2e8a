"""Expression graphs (`inputs:` + `nodes:`) and recurrent layers through time.

Oracles: PyTorch autograd float64 (expression graphs evaluated from the formula text by
Python's own parser in tests/oracle.py, never by bptrace.formula; recurrent layers by
nn.RNN / LSTM / GRU and an explicit per-step graph), random graphs and sizes by hypothesis,
the mistakes planted by independent torch computations (a truncated backward through time,
a use of a value detached)."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import oracle
import pytest
from click.testing import CliRunner
from conftest import ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from planted import expected_block

import bptrace
from bptrace import formula as F
from bptrace.check import Checker, scenario_answers
from bptrace.cli import main

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- the formula parser ---------------------------------------------------------------------

@pytest.mark.parametrize("text, written", [
    ("x + y * z", "x + y · z"), ("(x + y) * z", "(x + y) · z"), ("-x ** 2", "−x^2"), ("x - (y - z)", "x − (y − z)"),
    ("x / y / z", "x / y / z"), ("x / (y / z)", "x / (y / z)"), ("d * -1", "d · (−1)"), ("max(x, -y)", "max(x, −y)"),
])
def test_the_parser_keeps_precedence_and_writes_only_needed_parentheses(text, written):
    assert F.text(F.parse(text)) == written


@pytest.mark.parametrize("text, column, words", [
    ("x +", 3, "expected a number"), ("2x", 1, "after a complete formula"), ("x ^ 2", 2, "unexpected character"),
    ("foo(x)", 0, "unknown function"), ("x ** y", 5, "exponent"), ("max(x)", 0, "takes 2 arguments"),
    ("(x + y", 6, "expected ')'"), ("__import__('os')", 11, "unexpected character"), ("exp", 0, "is a function"),
])
def test_the_parser_refuses_with_the_column(text, column, words):
    with pytest.raises(F.FormulaError) as caught:
        F.parse(text)
    assert caught.value.column == column and words in caught.value.message


def test_a_name_used_twice_in_one_formula_has_one_local_gradient_the_sum():
    tree = F.parse("x * x + 3 * x")
    values = F.forward(tree, {"x": 2.0})
    assert values[tree.id] == 10.0 and F.gradients(tree, values) == {"x": 7.0}


def test_kinks_follow_pytorch_and_a_tie_on_paper_splits_the_gradient(torch):
    trace = bptrace.run(bptrace.loads("inputs: {a: 2, b: 2, c: -1}\nnodes:\n  m: max(a, b)\n  r: relu(c) + abs(c - c)\n"
                                      "  f: m + r\n"))
    assert trace.value("m.local.a").item() == trace.value("m.local.b").item() == 0.5
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    torch.maximum(a, b).backward()
    assert a.grad.item() == b.grad.item() == 0.5                       # torch.maximum splits a tie too
    # 0.1 + 0.2 against 0.3: unequal floats, equal on paper: a tie, within the float noise
    trace = bptrace.run(bptrace.loads("inputs: {a: 0.1, b: 0.2, c: 0.3}\nnodes:\n  s: a + b\n  f: max(s, c)\n"))
    assert trace.value("f.local.s").item() == trace.value("f.local.c").item() == 0.5
    trace = bptrace.run(bptrace.loads("inputs: {a: 0.1, b: 0.2, c: 0.3}\nnodes:\n  f: relu(a + b - c)\n"))
    assert trace.value("f.out").item() == 0 and trace.value("a.delta").item() == 0


# --- the shipped circuits -------------------------------------------------------------------

def test_the_cs231n_circuit_reproduces_the_notes():
    trace = bptrace.run(bptrace.load(ROOT / "scenarios/cs231n_circuit.yaml"))
    got = {name: trace.value(name).item() for name in ("q.out", "f.out", "x.delta", "y.delta", "z.delta", "q.delta")}
    assert got == {"q.out": 3, "f.out": -12, "x.delta": -4, "y.delta": -4, "z.delta": 3, "q.delta": -4}
    assert trace["f.local.q"].rule == "f.local.q = ∂f/∂q = z"


def test_the_staged_example_writes_each_fork_as_a_sum(torch):
    scenario = bptrace.load(ROOT / "scenarios/cs231n_staged.yaml")
    trace = bptrace.run(scenario)
    x = trace["x.delta"]
    assert [part.layer for part in x.parts] == ["xpy", "sigx", "num"]     # x is read three times
    assert oracle.check(trace, oracle.graph_values(scenario)) > 0
    # the whole formula as one node gives the same gradients
    one = bptrace.run(bptrace.loads("inputs: {x: 3, y: -4}\nnodes:\n  f: (x + sigmoid(y)) / (sigmoid(x) + (x + y)**2)\n"))
    for name in ("x.delta", "y.delta", "f.out"):
        assert np.isclose(one.value(name), trace.value(name), rtol=1e-14, atol=0).all()


def test_every_output_format_runs_on_a_graph_and_html_draws_the_circuit(tmp_path):
    path = str(ROOT / "scenarios/cs231n_sigmoid_neuron.yaml")
    for fmt in ("text", "json", "markdown", "latex", "html"):
        result = CliRunner().invoke(main, ["run", path, "--format", fmt])
        assert result.exit_code == 0, (fmt, result.output)
    html = CliRunner().invoke(main, ["run", path, "--format", "html"]).output
    assert html.count("<svg") == 2 and html.count('id="circuit"') == 1 and ">0.7311<" in html and ">−0.1966<" in html   # f's value; w0's gradient
    text = CliRunner().invoke(main, ["run", path]).output
    assert "forward, node by node" in text and "w0.delta = a.delta · ∂a/∂w0 = −0.1966119\n" in text   # --digits, default 7
    latex = CliRunner().invoke(main, ["run", path, "--format", "latex"]).output
    assert "Backward, from the output" in latex
    data = json.loads(CliRunner().invoke(main, ["run", path, "--format", "json"]).output)
    assert {"x0.delta", "f.local.h", "a.out"} <= {step["name"] for step in data["steps"]}


def test_check_and_explain_work_on_graphs_and_recurrent_layers():
    for path in ("cs231n_circuit.yaml", "cs231n_sigmoid_neuron.yaml", "lstm_gomez.yaml"):
        result = CliRunner().invoke(main, ["check", str(ROOT / "scenarios" / path)])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["explain", str(ROOT / "scenarios/cs231n_staged.yaml"), "x.delta"])
    assert result.exit_code == 0 and "through num" in result.output and "through sigx" in result.output, result.output
    # a gradient summed over time: one term per time step
    result = CliRunner().invoke(main, ["explain", str(ROOT / "scenarios/rnn_small.yaml"), "r.grad.weight_hh[0,1]"])
    assert result.exit_code == 0, result.output
    assert result.output.count("r.h.delta[") >= 2, result.output


# --- random expression graphs against torch -------------------------------------------------

UNARY = ["exp({})", "tanh({})", "sigmoid({})", "relu({})", "abs({})", "log(1 + ({}) ** 2)", "sqrt(2 + tanh({}))",
         "-({})", "({}) ** 2", "({}) ** 3"]
BINARY = ["{} + {}", "{} - {}", "{} * {}", "{} / (1.5 + ({}) ** 2)", "max({}, {})", "min({}, {})"]


@st.composite
def graphs(draw):
    n_inputs = draw(st.integers(1, 3))
    shape = draw(st.sampled_from([None, [2], [2, 2]]))
    inputs = [f"i{k}" for k in range(n_inputs)]
    values = {}
    for name in inputs:
        size = int(np.prod(shape)) if shape else 1
        numbers = draw(st.lists(st.floats(-2, 2).filter(lambda v: abs(v) > 0.05), min_size=size, max_size=size))
        values[name] = numbers[0] if shape is None else np.reshape(numbers, shape).tolist()
    names = list(inputs)
    nodes = {}
    for k in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            formula = draw(st.sampled_from(UNARY)).format(draw(st.sampled_from(names)))
        else:
            formula = draw(st.sampled_from(BINARY)).format(draw(st.sampled_from(names)), draw(st.sampled_from(names)))
        if draw(st.booleans()):
            formula = f"{formula} + 0.5 * {draw(st.sampled_from(names))}"
        nodes[f"n{k}"] = formula
        names.append(f"n{k}")
    return json.dumps({"inputs": values, "nodes": nodes})


@SETTINGS
@given(graphs())
def test_random_expression_graphs_agree_with_torch(torch, text):
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    # away from the kinks, where autograd and the paper agree on which side a value is
    for layer in scenario.layers:
        if F.has_kinks(layer.tree):
            for name in trace.names():
                if name.endswith(".out") or "." not in name:
                    if np.abs(trace.value(name)).min() < 1e-6:
                        return
    assert oracle.check(trace, oracle.graph_values(scenario)) > 0
    assert oracle.check(trace, oracle.graph_values(scenario, trace)) > 0


# --- random recurrent sizes against torch ---------------------------------------------------

@SETTINGS
@given(st.sampled_from(["rnn", "lstm", "gru"]), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3), st.sampled_from(["sequence", "last"]), st.integers(0, 10_000), st.booleans())
def test_random_recurrent_sizes_agree_with_torch(torch, kind, N, T, F_, H, returns, seed, relu):
    rng = np.random.default_rng(seed)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]

    def lit(*shape):
        return json.dumps(rng.uniform(-1, 1, size=shape).tolist())
    extra = ", nonlinearity: relu" if kind == "rnn" and relu else ""
    extra += f", c0: {lit(N, H)}" if kind == "lstm" else ""
    out = [N, T, H] if returns == "sequence" else [N, H]
    text = (f"input: {lit(N, T, F_)}\nlayers:\n  - {{type: {kind}, name: L, hidden: {H}, return: {returns}, "
            f"weight_ih: {lit(gates * H, F_)}, weight_hh: {lit(gates * H, H)}, bias_ih: {lit(gates * H)}, "
            f"bias_hh: {lit(gates * H)}, h0: {lit(N, H)}{extra}}}\n"
            f"loss: {{type: half_sse, target: {lit(*out)}}}\n")
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    if kind == "rnn" and relu and np.abs(trace.value("L.h")).min() < 1e-9:
        return                                       # on relu's kink
    assert oracle.check(trace, oracle.global_values(scenario)) > 0


# --- the mistake catalog --------------------------------------------------------------------

LSTM_SHEET_SCENARIO = """name: planted lstm
input: [[0.5, -0.3], [0.8, 0.1], [-0.2, 0.6]]
layers:
  - {type: lstm, name: L, hidden: 2,
     weight_ih: [[0.1, -0.2], [0.3, 0.4], [-0.5, 0.2], [0.6, -0.1], [0.2, 0.3], [-0.4, 0.5], [0.7, 0.1], [0.0, -0.3]],
     weight_hh: [[0.2, 0.1], [-0.3, 0.4], [0.5, -0.2], [0.1, 0.6], [-0.1, 0.2], [0.3, 0.3], [0.4, -0.5], [0.2, 0.2]],
     bias_ih: [0.1, 0.2, 0.0, -0.1, 0.3, 0.1, -0.2, 0.05]}
loss: {type: half_sse, target: [[0.1, 0.2], [0.3, -0.1], [0.0, 0.4]]}
"""


def _lstm_sheet(torch, truncated: bool) -> dict:
    """The LSTM's gradients by an independent torch loop; `truncated` detaches h and c between
    time steps: the student who forgot the path through the next time step."""
    sc = bptrace.loads(LSTM_SHEET_SCENARIO)
    layer = sc.layers[0]
    p = {role: oracle.tensor(v).requires_grad_() for role, v in layer.params.items()}
    x = oracle.tensor(sc.input)
    h = c = torch.zeros(1, 2, dtype=torch.float64)
    outs = []
    for t in range(3):
        if truncated:
            h, c = h.detach(), c.detach()
        gates = x[:, t] @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        i, f, g, o = gates.split(2, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    loss = 0.5 * ((torch.stack(outs, 1) - oracle.tensor(sc.loss.target)) ** 2).sum()
    loss.backward()
    return {"L.grad.weight_hh": p["weight_hh"].grad.numpy(), "L.grad.weight_ih": p["weight_ih"].grad.numpy()}


def _report(text):
    scenario = bptrace.loads(text, "sheet.yaml")
    return Checker().check(scenario, scenario_answers(scenario), file="sheet.yaml", scenario_path="sheet.yaml")


def test_a_truncated_backward_through_time_is_named(torch):
    right = _report(LSTM_SHEET_SCENARIO + expected_block(_lstm_sheet(torch, truncated=False)))
    assert not right.failed and right.diagnosis == []
    report = _report(LSTM_SHEET_SCENARIO + expected_block(_lstm_sheet(torch, truncated=True)))
    assert report.failed
    assert [d.id for d in report.diagnosis] == ["recurrent-next-step-path-missing"]
    assert report.unexplained == []


def test_a_branch_left_out_where_a_value_is_used_twice_is_named(torch):
    scenario = bptrace.load(ROOT / "scenarios/cs231n_staged.yaml")
    text = (ROOT / "scenarios/cs231n_staged.yaml").read_text(encoding="utf-8")
    # torch, with x's use in sigx detached: that branch sends nothing back
    x, y = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (3.0, -4.0))
    f = (x + torch.sigmoid(y)) / (torch.sigmoid(x.detach()) + (x + y) ** 2)
    f.backward()
    report = _report(text + expected_block({"x.delta": x.grad.item(), "y.delta": y.grad.item()}))
    assert scenario.plan.readers["x"] and report.failed
    assert [d.id for d in report.diagnosis] == ["branch-missing-where-used-twice"]
    assert "sigx" in report.diagnosis[0].message
    assert report.unexplained == []


# --- finite differences and float noise on expression graphs ---------------------------------

def test_expression_graph_gradients_match_finite_differences():
    from test_oracle_fd import ATOL, RTOL, finite_differences

    for path in ("cs231n_staged.yaml", "cs231n_sigmoid_neuron.yaml"):
        scenario = bptrace.load(ROOT / "scenarios" / path)
        trace = bptrace.run(scenario)
        fd = finite_differences(scenario)
        assert {s.name for s in trace.steps if s.name.endswith(".delta")} == set(fd)
        for name, approx in fd.items():
            assert np.isclose(trace.value(name), approx, rtol=RTOL, atol=ATOL).all(), name


@SETTINGS
@example([Fraction(21, 5), Fraction(-25, 6), Fraction(1, 1)], "(a + b) * (b - c) * (a - c)")   # a cancelling sum
@given(st.lists(st.fractions(-5, 5, max_denominator=10).filter(lambda v: v != 0), min_size=3, max_size=3),
       st.sampled_from(["a * b - c / (a * a + 1)", "(a + b) * (b - c) * (a - c)", "a / (b * b + 0.1) + c ** 3",
                        "(a - 0.1) * (b + 0.2) - c * 0.3"]))
def test_the_forward_noise_bound_holds_the_exact_value(values, text):
    """The interval bound of an expression node contains the value computed in exact rational
    arithmetic (Python's fractions, walked over Python's own parse of the formula)."""
    import ast
    from fractions import Fraction

    # a number written in the file is exact as written (its shortest decimal), so the exact
    # value is taken from the floats' decimals, as bptrace reads them
    env = {k: Fraction(repr(float(v))) for k, v in zip("abc", values)}

    def exact(node):
        if isinstance(node, ast.Expression):
            return exact(node.body)
        if isinstance(node, ast.Constant):
            return Fraction(str(node.value))
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.BinOp):
            a, b = exact(node.left), exact(node.right)
            return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                    ast.Div: lambda: a / b, ast.Pow: lambda: a ** int(b)}[type(node.op)]()
        raise AssertionError(node)

    truth = exact(ast.parse(text, mode="eval"))
    inputs = {k: float(v) for k, v in env.items()}
    scenario = bptrace.loads(json.dumps({"inputs": {k: v for k, v in inputs.items()}, "nodes": {"f": text}}))
    layer = scenario.layers[0]
    xs = [np.array([[inputs[r]]]) for r in layer.reads]
    noise = {f"in{k}": np.array([[abs(float(Fraction(inputs[r]) - env[r]))]]) for k, r in enumerate(layer.reads)}
    out = layer.forward(xs, {}, None)
    bound = layer.forward_noise(xs, {}, out, noise)
    assert abs(Fraction(float(out[0, 0])) - truth) <= Fraction(float(bound[0, 0]))
