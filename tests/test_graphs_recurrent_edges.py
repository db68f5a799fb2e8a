"""Edge cases of expression graphs and recurrent layers found by a QA pass over issue 14:
each test failed before its fix."""
from __future__ import annotations

from click.testing import CliRunner

import bptrace
from conftest import ROOT
from bptrace.cli import main


def _run(tmp_path, text, *options):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return CliRunner().invoke(main, ["run", str(path), *options])


def test_a_domain_error_in_exact_arithmetic_is_a_located_message(tmp_path):
    # the message shows the inputs' values; exact ones are fractions, which have no 'g' format
    result = _run(tmp_path, "inputs: {x: 0, y: 1}\nnodes:\n  q: y / 3\n  f: q / x\n", "--arithmetic", "exact")
    assert result.exit_code == 2, result.output
    assert "divides by zero, with q = 1/3, x = 0" in result.output, result.output


def test_a_fractional_power_of_a_negative_number_is_outside_its_domain(tmp_path):
    # Python's (-4.0) ** 0.5 is a complex number; torch gives nan: refused, located
    for formula in ("x ** 0.5", "y * x ** -1.5"):
        result = _run(tmp_path, f"inputs: {{x: -4, y: 2}}\nnodes:\n  f: {formula}\n")
        assert result.exit_code == 2, result.output
        assert "takes a function outside its domain, with" in result.output and "x = -4" in result.output, result.output


def test_a_power_of_zero_has_slope_zero_everywhere_as_in_torch(torch, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("inputs: {x: [0, 2], y: [3, 3]}\nnodes:\n  f: x ** 0 * y + x\n")
    for arithmetic in ("float", "exact"):
        trace = bptrace.run(bptrace.load(path), arithmetic=arithmetic)
        x = torch.tensor([0.0, 2.0], dtype=torch.float64, requires_grad=True)
        f = x ** 0 * 3 + x
        f.sum().backward()
        assert trace.value("f.out").ravel().tolist() == f.tolist()
        assert trace.value("x.delta").ravel().tolist() == x.grad.tolist() == [1.0, 1.0]


def _results(*args):
    output = CliRunner().invoke(main, ["run", *args]).output
    return output[output.index("━━ results"):]


def test_results_say_what_a_computed_inner_value_is_not_as_written():
    rnn = str(ROOT / "scenarios/rnn_small.yaml")
    results = _results(rnn, "--only", "r.h,r.h.delta,r.weight_hh")
    assert "r.h  computed by r" in results and "r.h.delta  ∂loss/∂r.h" in results, results
    assert "r.weight_hh  as written" in results, results
    # an expression graph's input has no `.out`; a node's edge is its local gradient
    results = _results(str(ROOT / "scenarios/cs231n_circuit.yaml"), "--only", "x.delta,q.delta,f.local.q")
    assert "x.delta = −4  ∂loss/∂x\n" in results and "q.delta = −4  ∂loss/∂q.out" in results, results
    assert "f.local.q = −4  ∂f/∂q, a local gradient" in results, results
    # `steps:`: the second step's parameters are the first update's result
    results = _results(str(ROOT / "scenarios/sgd_momentum_two_steps.yaml"), "--only", "step2.d.weights")
    assert "step2.d.weights = 1.6  as step 1's update left it" in results, results


def test_a_sequence_is_shown_by_time_step_and_unit_and_recurrent_weights_by_their_rows():
    rnn = str(ROOT / "scenarios/rnn_small.yaml")
    output = CliRunner().invoke(main, ["run", rnn, "--only", "r.h,r.grad.weight_hh"]).output
    assert "rows: time step · columns: unit" in output and "axis 2" not in output, output
    assert "rows: unit · columns: hidden unit" in output and "rows: sample" not in output, output
    output = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/lstm_gomez.yaml"), "--only",
                                       "lstm.grad.weight_ih"]).output
    assert "rows: gate unit · columns: input feature" in output, output


RELU_RNN = """
input: [[[1, -2], [0.5, 1], [-1, 0.25]], [[0.2, 0.1], [-0.3, 0.6], [1.5, -0.5]]]
layers:
  - type: rnn
    name: r
    hidden: 3
    nonlinearity: relu
    weight_ih: [[0.5, -0.2], [-0.3, 0.8], [0.1, 0.1]]
    weight_hh: [[0.1, 0.4, -0.2], [-0.2, 0.3, 0.5], [0.6, -0.1, 0.2]]
    bias_ih: [0.1, 0.0, -0.1]
    bias_hh: [0.05, 0.1, 0.0]
    h0: [[0.1, -0.2, 0.3], [0, 0.5, 0]]
    return: last
  - {type: dense, weights: [[1, -1, 0.5]], bias: [0.2]}
loss: {type: mse, target: [[0.5], [-0.25]]}
"""


def test_a_relu_rnn_runs_exactly_from_its_written_h0(torch):
    import numpy as np
    import yaml
    trace = bptrace.run(bptrace.loads(RELU_RNN), arithmetic="exact")
    spec = yaml.safe_load(RELU_RNN)
    layer, dense = spec["layers"]
    rnn = torch.nn.RNN(2, 3, nonlinearity="relu", batch_first=True).double()
    with torch.no_grad():
        for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rnn, f"{role}_l0").copy_(torch.tensor(layer[role], dtype=torch.float64))
    x = torch.tensor(spec["input"], dtype=torch.float64, requires_grad=True)
    out, _ = rnn(x, torch.tensor(layer["h0"], dtype=torch.float64)[None])
    y = out[:, -1] @ torch.tensor(dense["weights"], dtype=torch.float64).T + dense["bias"][0]
    ((y - torch.tensor(spec["loss"]["target"], dtype=torch.float64)) ** 2).mean().backward()
    assert trace["r.h"].exact is not None                          # fractions, not floats
    for name, want in (("r.h", out), ("input.delta", x.grad), ("r.grad.weight_hh", rnn.weight_hh_l0.grad),
                       ("r.grad.bias_ih", rnn.bias_ih_l0.grad)):
        assert np.allclose(trace.value(name), want.detach().numpy().reshape(trace.value(name).shape),
                           atol=1e-12), name


def test_a_tanh_rnn_in_exact_arithmetic_is_refused_naming_the_layer(tmp_path):
    result = _run(tmp_path, RELU_RNN.replace("nonlinearity: relu", "nonlinearity: tanh"), "--arithmetic", "exact")
    assert result.exit_code == 2 and "layers[0]" in result.output and "r (rnn)" in result.output, result.output


def test_the_staged_lists_follow_digits_and_show_exact_numbers_whole(tmp_path):
    path = str(ROOT / "scenarios/cs231n_sigmoid_neuron.yaml")
    text = CliRunner().invoke(main, ["run", path, "--digits", "3"]).output
    assert "  f = 1 / h.out = 0.731\n" in text and "  x0.delta = a.delta · ∂a/∂x0 = 0.393\n" in text, text
    result = _run(tmp_path, "inputs: {x: 1, y: 3}\nnodes:\n  f: x / y\n", "--arithmetic", "exact")
    assert "  f = x / y = 1/3\n" in result.output and "  y.delta = f.delta · ∂f/∂y = −1/9\n" in result.output, \
        result.output
    latex = _run(tmp_path, "inputs: {x: 1, y: 3}\nnodes:\n  f: x / y\n", "--arithmetic", "exact", "--format", "latex")
    assert "0.3333333333" not in latex.output, latex.output


def test_each_edge_label_of_the_circuit_sits_on_its_own_edge():
    # the notes' picture: an edge's value above it, its gradient below it; a steep edge's
    # labels left level with its end sat beside another edge (w1's −3 read as x0's)
    import re

    from bptrace.render.circuit import circuit_data, svg
    trace = bptrace.run(bptrace.load(ROOT / "scenarios/cs231n_sigmoid_neuron.yaml"))
    picture = svg(circuit_data(trace))
    paths = [tuple(map(float, found)) for found in
             re.findall(r'<path d="M(-?[\d.]+),(-?[\d.]+) C[\d.]+,[\d.]+ [\d.]+,[\d.]+ (-?[\d.]+),(-?[\d.]+)"', picture)]
    greens = [(float(x), float(y)) for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)" fill="#2e7d32"', picture)]
    assert len(paths) == 12 and len(greens) == 13       # 12 edges; the output's own edge is a line
    for (sx, sy, ex, ey), (x, y) in zip(paths, greens):
        mid = (sx + ex) / 2
        curve = [((1 - t) ** 3 * sx + 3 * (1 - t) * t * mid + t ** 3 * ex,
                  ((1 - t) ** 3 + 3 * (1 - t) ** 2 * t) * sy + (3 * (1 - t) * t ** 2 + t ** 3) * ey)
                 for t in (k / 2000 for k in range(2001))]
        distance = min(((cx - x) ** 2 + (cy - (y + 5)) ** 2) ** 0.5 for cx, cy in curve)
        assert distance < 2, ((sx, sy, ex, ey), (x, y))


def test_explain_writes_a_written_h0_by_its_value_in_the_sum(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(RELU_RNN)
    output = CliRunner().invoke(main, ["explain", str(path), "r.grad.weight_hh[1,0]"]).output
    # h0 differs per sample (0.1 and 0): the name alone could not be checked by hand
    assert "− 0.172854·0·0.1 + 0.303642·1·0 = 1.0763124" in output and "·r.h0" not in output, output
    assert "r.h0[0,0] 0.1" in output, output


def test_a_formula_nested_too_deep_is_refused_with_its_place(tmp_path):
    for formula in ("(" * 3000 + "x" + ")" * 3000, " + ".join(["x"] * 3000), "-" * 3000 + "x"):
        result = _run(tmp_path, f"inputs: {{x: 2}}\nnodes:\n  f: '{formula}'\n")
        assert result.exit_code == 2 and "nests more than 64 operations deep" in result.output, result.output[-300:]
    # at the limit every pass and every format still fits Python's recursion limit
    at_limit = "max(x, " * 62 + "y" + ")" * 62 + " * y"
    for fmt in ("text", "html", "latex"):
        result = _run(tmp_path, f"inputs: {{x: 0.3, y: 0.5}}\nnodes:\n  f: '{at_limit}'\n", "--format", fmt)
        assert result.exit_code == 0, (fmt, result.output[-300:])


def test_a_nested_fraction_is_written_in_work_linear_in_its_depth(monkeypatch):
    # each level wrote its parts twice (LaTeX) and wrote whole parts out to compare them with
    # 0 and 1 (the derivative's rule): 1.1 million pieces at depth 16, minutes at depth 22
    from bptrace import formula as F
    from bptrace import notation
    from bptrace.render import latex
    calls = {"text": 0, "pieces": 0}
    text, pieces = notation.text, latex.rule_pieces

    def counted_text(*args, **kwargs):
        calls["text"] += 1
        return text(*args, **kwargs)

    def counted_pieces(*args, **kwargs):
        calls["pieces"] += 1
        return pieces(*args, **kwargs)

    monkeypatch.setattr(notation, "text", counted_text)
    monkeypatch.setattr(latex, "rule_pieces", counted_pieces)
    depth = 16
    rules = F.local_gradient_rules(F.parse("1 / (" * depth + "x" + ")" * depth + " * y"))
    for rule in rules.values():
        latex.mixed(rule)
    assert calls["text"] < depth ** 2 and calls["pieces"] < 10 * depth ** 2, calls


def test_explain_does_not_call_a_recurrent_state_zero():
    path = str(ROOT / "scenarios/lstm_gomez.yaml")
    for name in ("lstm.c.delta[0]", "lstm.gate.i.delta[0]", "lstm.c[1]"):
        output = CliRunner().invoke(main, ["explain", path, name]).output
        assert "so it is 0" not in output and "the rule above computes it" in output, output
