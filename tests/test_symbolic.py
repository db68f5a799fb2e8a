"""`arithmetic: symbolic`: the same loops on formulas in the scenario's letters.

The formulas are held against derivations written here by hand from the chain rule (sympy
expressions built term by term, not by bptrace); bound letters against float mode."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

sympy = pytest.importorskip("sympy")

from bptrace.cli import main  # noqa: E402
from bptrace.engine import run  # noqa: E402
from bptrace.errors import ScenarioError  # noqa: E402
from bptrace.scenario import load, loads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED002 = ROOT / "scenarios" / "seed002_symbolic.yaml"
SEED000 = ROOT / "scenarios" / "seed000_symbolic.yaml"
S = sympy.Symbol


def full(trace, name, index=()):
    """The element's formula in the scenario's letters."""
    return trace[name].exact[index].full


def same(a, b) -> bool:
    return sympy.expand(a - b) == 0


# --- seed 002: ∂C/∂w¹₁ through two convolutions -------------------------------------------

def seed002_by_hand():
    i = {k: S(f"i{k}") for k in range(1, 10)}
    w1 = {k: S(f"w1_{k}") for k in range(1, 5)}
    w2 = {k: S(f"w2_{k}") for k in range(1, 5)}
    y = S("y")
    # o¹ₖ: each 2x2 window of the input (row by row) against w¹
    windows = [(1, 2, 4, 5), (2, 3, 5, 6), (4, 5, 7, 8), (5, 6, 8, 9)]
    o1 = [sum(i[p] * w1[t + 1] for t, p in enumerate(window)) for window in windows]
    o2 = sum(w2[k + 1] * o1[k] for k in range(4))
    dC_do2 = 2 * (o2 - y)                                   # C = (o² − y)²
    dC_do1 = [w2[k + 1] * dC_do2 for k in range(4)]         # o² = Σ w²ₖ o¹ₖ
    # ∂C/∂w¹₁: w¹₁ multiplies the first pixel of each window: one sum of four products
    dC_dw1_1 = sum(dC_do1[k] * i[windows[k][0]] for k in range(4))
    return i, w1, w2, y, o1, o2, dC_do1, dC_dw1_1


def test_seed002_formulas_equal_the_chain_rule_by_hand():
    i, w1, w2, y, o1, o2, dC_do1, dC_dw1_1 = seed002_by_hand()
    trace = run(load(SEED002))
    assert same(full(trace, "loss"), (o2 - y) ** 2)
    for k, idx in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert same(full(trace, "c1.out", (0, 0) + idx), o1[k])
        assert same(full(trace, "c1.delta", (0, 0) + idx), dC_do1[k])
    assert same(full(trace, "c1.grad.kernel", (0, 0, 0, 0)), dC_dw1_1)
    # and sympy's own derivative of C agrees with the hand derivation
    assert same(dC_dw1_1, sympy.diff((o2 - y) ** 2, w1[1]))


def test_seed002_steps_read_the_values_before_them():
    # c1.delta[1,1] = w²₁ · c2.delta: in terms of what the step reads, not expanded
    trace = run(load(SEED002))
    assert str(trace["c1.delta"].exact[0, 0, 0, 0]) == "c2.delta·w²₁"
    grad = trace["c1.grad.kernel"].exact[0, 0, 0, 0]
    assert str(grad) == "c1.delta[1,1]·i₁ + c1.delta[1,2]·i₂ + c1.delta[2,1]·i₄ + c1.delta[2,2]·i₅"
    assert len(grad.expr.args) == 4


def test_seed002_text_shows_letters_with_sub_and_superscripts(capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", str(SEED002), "--only", "c1.delta", "--width", "120"], standalone_mode=True)
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "c1.delta[1,1] = c2.delta·c2.kernel[1,1]" in out and "c2.delta·w²₁" in out
    with pytest.raises(SystemExit):
        main(["run", str(SEED002), "--only", "c1.grad.kernel", "--expand", "--width", "400"])
    out = capsys.readouterr().out
    assert "2·(i₁·w²₁ + i₂·w²₂ + i₄·w²₃ + i₅·w²₄)·(" in out


def test_check_names_the_askers_product_of_two_sums_wrong(tmp_path, capsys):
    i, w1, w2, y, o1, o2, dC_do1, dC_dw1_1 = seed002_by_hand()
    o2_text = str(o2).replace(" ", "")
    sheet = tmp_path / "answers.yaml"
    sheet.write_text(textwrap.dedent(f"""\
        c1.grad.kernel[1,1]: "(i1 + i2 + i4 + i5) * (w2_1 + w2_2 + w2_3 + w2_4) * 2*({o2_text} - y)"
        c2.grad.kernel[1,1]: "(i1*w1_1 + i2*w1_2 + i4*w1_3 + i5*w1_4) * 2*({o2_text} - y)"
        c1.grad.kernel[1,2]: "2*({o2_text} - y)*(i2*w2_1 + i3*w2_2 + i5*w2_3 + i6*w2_4)"
        """))
    with pytest.raises(SystemExit) as done:
        main(["check", str(SEED002), "--expected", str(sheet), "--width", "400"])
    assert done.value.code == 1
    out = capsys.readouterr().out
    assert "2 passed, 1 failed" in out
    wrong = [line for line in out.splitlines() if "✗" in line]
    assert len(wrong) == 1
    assert "16 products" in wrong[0] and "4 products" in wrong[0] and "12 products too many" in wrong[0]


def test_a_formula_answer_is_parsed_by_the_whitelist_parser(tmp_path):
    from bptrace.check.answers import read_answers

    sc = load(SEED002)
    sheet = tmp_path / "a.yaml"
    sheet.write_text('c2.out: "__import__(os)"\n')
    with pytest.raises(ScenarioError) as error:
        read_answers(str(sheet), sc)
    assert error.value.line == 1
    sheet.write_text('c2.out: "q1 * w2_1"\n')
    with pytest.raises(ScenarioError, match="`q1` is not one of the scenario's letters"):
        read_answers(str(sheet), sc)


@pytest.mark.parametrize("answer", ["i1**99999999", "2**-99999999", "(i1 + i2)**99999",
                                    "((i1 + i2 + i3)**10)**10",
                                    "*".join(["(i1 + i2 + i3 + i4 + i5 + i6 + i7 + i8 + i9)"] * 8)])
def test_an_answer_that_multiplies_out_to_pages_is_refused_at_once(tmp_path, answer):
    # each of these hung check (sympy expanding or computing a number of millions of digits)
    from bptrace.check.answers import read_answers

    sheet = tmp_path / "a.yaml"
    sheet.write_text(f'c2.out: "{answer}"\n')
    with pytest.raises(ScenarioError, match="too large|too many") as error:
        read_answers(str(sheet), load(SEED002))
    assert error.value.line == 1
    sheet.write_text('c2.out: "i1/0 + w2_1"\n')          # was judged wrong as "yours is zoo·i₁"
    with pytest.raises(ScenarioError, match="divides by zero"):
        read_answers(str(sheet), load(SEED002))
    sheet.write_text('c2.out: "(i1 + i2)**2 * w2_1**-3 + 2**10"\n')       # an ordinary power is read
    read_answers(str(sheet), load(SEED002))


def test_a_number_answers_a_step_whose_letters_are_all_bound(tmp_path, capsys):
    # r.out = a·w1 + b·w2 = 1·0.5 + 2·0.25 = 1 with every letter bound: "1" was called wrong
    # ("yours is 1, … where the chain rule gives a·w₁ + b·w₂"), though it is that step's value
    sc = tmp_path / "bound.yaml"
    sc.write_text(RELU + "values: {a: 1, b: 2, w1: 0.5, w2: 0.25, y: 3}\n")
    sheet = tmp_path / "a.yaml"
    sheet.write_text('r.out: 1\nloss: 4\nd.grad.weights: ["2*(a*w1 + b*w2 - y)*a", -8]\nd.delta: -4.0\n')
    with pytest.raises(SystemExit) as done:
        main(["check", str(sc), "--expected", str(sheet), "--width", "300"])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    sheet.write_text("r.out: 1.5\nd.delta: -4.1\n")
    with pytest.raises(SystemExit) as done:
        main(["check", str(sc), "--expected", str(sheet), "--width", "300"])
    out = capsys.readouterr().out
    assert done.value.code == 1 and "0 passed, 2 failed" in out


def test_explain_of_a_whole_step_lays_out_its_formulas(capsys):
    # the overview's table was each element's float: nan for every formula
    with pytest.raises(SystemExit) as done:
        main(["explain", str(SEED002), "c1.delta", "--width", "200"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "c2.delta·w²₄" in out.split("laid out as the tensor")[1] and "nan" not in out


def test_unrolled_on_unbound_letters_is_refused_not_called_different(capsys):
    # it printed a matrix of nan and "largest difference nan ✗ DIFFERENT"
    with pytest.raises(SystemExit) as done:
        main(["explain", "--unrolled", str(SEED002), "c1"])
    out = capsys.readouterr()
    assert done.value.code == 2 and "letters without values" in out.err + out.out
    assert "DIFFERENT" not in out.out and "Traceback" not in out.err


def test_same_formula_spot_checks_and_gives_a_reason():
    from bptrace.symbolic import same_formula

    x, w = S("x"), S("w")
    assert same_formula(w * x + w, w * (x + 1)) == (True, None)
    ok, why = same_formula(w * x, w * (x + 1))
    assert not ok and "w" in why


# --- seed 000: x_i = Σ_a w_a y_(a+i) ------------------------------------------------------

def test_seed000_derivation_equals_the_hand_derivation():
    y = [S(f"y{k}") for k in range(6)]
    w = [S(f"w{a}") for a in range(3)]
    e = [S(f"e{k}") for k in range(4)]
    x = [sum(w[a] * y[a + i] for a in range(3)) for i in range(4)]          # x_i = Σ_a w_a y_(a+i)
    f = [1 / (1 + sympy.exp(-xi)) for xi in x]                              # y^l_i = σ(x_i)
    dE_dx = [e[i] * f[i] * (1 - f[i]) for i in range(4)]                    # ∂E/∂x_i = ∂E/∂y_i σ′
    dE_dw = [sum(dE_dx[i] * y[i + a] for i in range(4)) for a in range(3)]  # Σ_i ∂E/∂x_i y_(i+a)
    delta = [sum(dE_dx[i - a] * w[a] for a in range(3) if 0 <= i - a <= 3) for i in range(6)]
    trace = run(load(SEED000))

    def as_exp(expr):
        return expr.rewrite(sympy.exp)

    for i in range(4):
        assert same(full(trace, "conv.out", (0, 0, 0, i)), x[i])
        assert sympy.simplify(as_exp(full(trace, "conv.delta", (0, 0, 0, i))) - dE_dx[i]) == 0
    for a in range(3):
        assert sympy.simplify(as_exp(full(trace, "conv.grad.kernel", (0, 0, 0, a))) - dE_dw[a]) == 0
    for i in range(6):
        assert sympy.simplify(as_exp(full(trace, "input.delta", (0, 0, 0, i))) - delta[i]) == 0


# --- bound letters: the float numbers ------------------------------------------------------

def bound_seed002() -> str:
    # seed002_two_convs.yaml's numbers, bound to seed002_symbolic.yaml's letters
    text = SEED002.read_text()
    return text + textwrap.dedent("""
        values: {i1: 1, i2: 2, i3: 1, i4: 3, i5: 1, i6: 2, i7: 2, i8: 1, i9: 3,
                 w1_1: 0.5, w1_2: -1, w1_3: 1, w1_4: 0.5, w2_1: 0.5, w2_2: 0.25, w2_3: -0.5, w2_4: 1, y: 2}
        """)


def test_bound_letters_give_the_float_numbers():
    symbolic = run(loads(bound_seed002()))
    floats = run(load(ROOT / "scenarios" / "seed002_two_convs.yaml"))
    for step in floats.steps:
        np.testing.assert_allclose(symbolic[step.name].values, step.values, rtol=1e-12, atol=1e-12)
    # ∂C/∂w¹₁ = −1 (the seed's comment), exactly
    assert symbolic["c1.grad.kernel"].exact[0, 0, 0, 0].value == -1


# every shipped scenario symbolic mode accepts, but zhang2016 (minutes of sympy) and
# adam_one_step (1.2 s)
SHIPPED = ["batchnorm.yaml", "cs231n_circuit.yaml", "d2l_transposed_conv.yaml", "d2l_transposed_conv_stride1.yaml",
           "dilated_conv.yaml", "lstm_gomez.yaml", "residual_block.yaml", "rnn_small.yaml", "seed000_1d.yaml",
           "seed000_batch.yaml", "seed001.yaml", "seed001_rounded.yaml", "seed002_two_convs.yaml",
           "sgd_momentum_two_steps.yaml", "stride_padding.yaml", "cs231n_sigmoid_neuron.yaml", "cs231n_staged.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_symbolic_with_numbers_equals_float_mode(name):
    path = ROOT / "scenarios" / name
    floats, symbolic = run(load(path)), run(load(path, arithmetic="symbolic"))
    for step in floats.steps:
        np.testing.assert_allclose(symbolic[step.name].values, step.values, rtol=1e-12, atol=1e-12,
                                   err_msg=step.name)


# --- refusals -------------------------------------------------------------------------------

RELU = """\
arithmetic: symbolic
input: [a, b]
layers:
  - {type: dense, name: d, weights: [[w1, w2]], bias: [0]}
  - {type: relu, name: r}
loss: {type: sse, target: y}
"""


def test_relu_on_unbound_letters_is_a_located_refusal():
    with pytest.raises(ScenarioError) as error:
        run(loads(RELU, "relu.yaml"))
    message = str(error.value)
    assert "r (relu)" in message and "values:" in message
    assert error.value.line == 5
    # bound, the side is decided and the formula goes on
    trace = run(loads(RELU + "values: {a: 1, b: 2, w1: 0.5, w2: 0.25}\n"))
    assert same(full(trace, "r.out", (0, 0)), S("a") * S("w1") + S("b") * S("w2"))


CLASSES = """arithmetic: symbolic
input: [[1, 2], [3, 4]]
layers:
  - {type: dense, name: d, weights: [[1, 0], [0, 1]]}
loss: {type: cross_entropy, target: [k, j]}
"""


def test_a_letter_as_a_class_index_is_a_located_refusal_or_its_value():
    # a letter as cross_entropy's class index was a TypeError (Sym has no `:g` format)
    with pytest.raises(ScenarioError, match="class index k is a letter without a value") as error:
        loads(CLASSES, "ce.yaml")
    assert error.value.line == 5 and "values:" in (error.value.hint or "")
    with pytest.raises(ScenarioError, match="class index 1.5 is not a whole number"):
        loads(CLASSES + "values: {k: 1.5, j: 0}\n")
    # bound to whole numbers, the letters are the classes: −log softmax(d.out)[k], by hand
    trace = run(loads(CLASSES + "values: {k: 1, j: 0}\n"))
    loss = (sympy.log(sympy.exp(1) + sympy.exp(2)) - 2 + sympy.log(sympy.exp(3) + sympy.exp(4)) - 3) / 2
    assert abs(float(trace["loss"].values) - float(loss)) < 1e-12


def test_softmax_and_cross_entropy_on_unbound_letters_are_the_textbook_formulas():
    # shifting by the largest score (float overflow's guard) needed numbers to compare, so a
    # softmax of letters was refused; on paper it is exp(a)/(exp(a) + exp(b))
    a, b, u, v = S("a"), S("b"), S("u"), S("v")
    trace = run(loads("arithmetic: symbolic\ninput: [[a, b]]\nlayers:\n  - {type: softmax, name: s}\n"
                      "upstream: {layer: s, delta: [[u, v]]}\n"))
    pa, pb = sympy.exp(a) / (sympy.exp(a) + sympy.exp(b)), sympy.exp(b) / (sympy.exp(a) + sympy.exp(b))
    assert sympy.simplify(full(trace, "s.out", (0, 0)) - pa) == 0
    assert sympy.simplify(full(trace, "input.delta", (0, 0)) - pa * (u - (u * pa + v * pb))) == 0
    shown = trace.to_text(width=200)
    assert "exp(a)/(exp(a) + exp(b))" in shown and "nan" not in shown
    loss = run(loads("arithmetic: symbolic\ninput: [[a, b]]\nlayers:\n  - {type: identity, name: d}\n"
                     "loss: {type: cross_entropy, target: 1}\n"))
    assert sympy.simplify(full(loss, "loss") - (sympy.log(sympy.exp(a) + sympy.exp(b)) - b)) == 0
    assert sympy.simplify(full(loss, "d.delta", (0, 0)) - pa) == 0
    # bound, the numbers are the float run's
    bound = "values: {a: 0.5, b: -1.25, u: 2, v: 0.75}\n"
    text = "input: [[a, b]]\nlayers:\n  - {type: softmax, name: s}\nupstream: {layer: s, delta: [[u, v]]}\n"
    floats = run(loads(text.replace("a, b", "0.5, -1.25").replace("u, v", "2, 0.75")))
    letters = run(loads("arithmetic: symbolic\n" + text + bound))
    for name in ("s.out", "input.delta"):
        np.testing.assert_allclose(letters[name].values, floats[name].values, rtol=1e-12, atol=1e-15)


def test_one_letter_stands_for_every_element_as_one_number_does():
    # `bias: b` and `upstream: {delta: u}` were filled through float(): nan, then a ValueError
    x1, x2, k, b, u = (S(n) for n in ("x1", "x2", "k", "b", "u"))
    trace = run(loads("arithmetic: symbolic\ninput: [[x1, x2]]\nlayers:\n"
                      "  - {type: dense, name: d, weights: [[k, 1], [1, k]], bias: b}\nupstream: {delta: u}\n"))
    assert same(full(trace, "d.out", (0, 1)), x1 + k * x2 + b)
    assert same(full(trace, "d.grad.bias", (0,)), u) and same(full(trace, "input.delta", (0, 0)), u * k + u)
    # the loss's (out − target) of letters reads in names, never as "nan − y₁"
    import bptrace

    shown = bptrace.run("arithmetic: symbolic\ninput: [[x1, x2]]\nlayers:\n  - {type: dense, name: d, weights: "
                        "[[k, 1], [1, k]]}\nloss: {type: mse, target: [[y1, y2]]}\n").to_text(width=200)
    assert "d.out[0] − y₁" in shown and "nan" not in shown
    conv = run(loads("arithmetic: symbolic\ninput: [[x1, x2], [x3, x4]]\nlayers:\n"
                     "  - {type: conv, name: c, kernel: [[k]], bias: b}\nloss: {type: sum}\n"))
    assert same(full(conv, "c.out", (0, 0, 1, 1)), k * S("x4") + b)


def test_max_pool_on_unbound_letters_is_a_located_refusal():
    # the winner was asked for again by the step's notes, outside the refusal: a traceback
    text = "arithmetic: symbolic\ninput: [[a, b], [c, d]]\nlayers:\n  - {type: maxpool, name: m, size: 2}\n" \
           "upstream: {layer: m, delta: u}\n"
    with pytest.raises(ScenarioError) as error:
        run(loads(text, "pool.yaml"))
    assert "m (maxpool) needs numbers to decide each window's winner" in str(error.value)
    assert "values:" in (error.value.hint or "") and error.value.line == 4
    with pytest.raises(ScenarioError, match="m \\(maxpool\\)"):
        run(loads(text + "values: {a: 1, b: 3, c: 2}\n"))
    trace = run(loads(text + "values: {a: 1, b: 3, c: 2, d: 0.5}\n"))
    assert same(full(trace, "m.out", (0, 0, 0, 0)), S("b")) and same(full(trace, "input.delta", (0, 0, 0, 1)), S("u"))


def test_a_letter_in_a_float_scenario_is_a_located_refusal():
    with pytest.raises(ScenarioError) as error:
        loads("input: [a, 1]\nlayers:\n  - {type: relu, name: r}\nupstream: {layer: r, delta: [1, 1]}\n", "f.yaml")
    assert error.value.line == 1 and "arithmetic: symbolic" in (error.value.hint or "")
    with pytest.raises(ScenarioError) as error:
        load(SEED002, arithmetic="float")
    assert error.value.line is not None and "'i1'" in str(error.value)


def test_rounding_needs_every_letter_bound():
    with pytest.raises(ScenarioError, match="a has no value") as error:
        loads(RELU + "rounding: {decimals: 2}\n", "r.yaml")
    assert error.value.line == 7
    trace = run(loads(RELU + "rounding: {decimals: 2}\nvalues: {a: 1, b: 2, w1: 0.125, w2: 0.25, y: 1}\n"))
    assert trace["d.out"].exact[0, 0].value == Fraction(63, 100)     # 1·0.125 + 2·0.25 = 0.625, half up to 2 decimals


def test_values_must_bind_letters_in_use():
    with pytest.raises(ScenarioError, match="binds q, which no tensor"):
        loads(RELU + "values: {q: 1}\n")
    with pytest.raises(ScenarioError, match="letters are read only"):
        loads("input: [1]\nlayers:\n  - {type: relu, name: r}\nupstream: {layer: r, delta: [1]}\nvalues: {a: 1}\n")


def test_symbols_fill_names_letters_from_the_index_base():
    sc = loads("arithmetic: symbolic\nconventions: {index_base: 1}\ninput: {symbols: x, shape: [2, 2]}\n"
               "layers:\n  - {type: relu, name: r}\nupstream: {layer: r, delta: [[1, 1], [1, 1]]}\n"
               "values: {x11: 1, x12: -1, x21: 2, x22: 0.5}\n")
    trace = run(sc)
    assert [str(v.expr) for v in trace["r.out"].exact.reshape(-1)] == ["x11", "0", "x21", "x22"]


# --- cost -----------------------------------------------------------------------------------

def test_help_and_float_runs_do_not_import_sympy():
    code = textwrap.dedent(f"""\
        import sys, runpy
        for argv in (["bptrace", "--help"], ["bptrace", "run", {str(ROOT / 'scenarios' / 'seed001.yaml')!r}]):
            sys.argv = argv
            try:
                runpy.run_module("bptrace", run_name="__main__")
            except SystemExit:
                pass
        print("sympy" in sys.modules)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("path", [SEED002, SEED000], ids=["seed002", "seed000"])
def test_formulas_compile_as_latex(path, tmp_path):
    # the formulas as math (w^{2}_{1}, \mathrm{c1.delta}_{1,1}, \sigma): no Unicode reaches pdflatex
    from test_render_latex import compile_tex

    from bptrace.render import latex

    source = latex.render(run(load(path)))
    assert r"w^{2}_{1}" in source or r"w_{0}" in source
    log = compile_tex(tmp_path, source)
    assert "Undefined control sequence" not in log


def test_explain_and_check_json_write_formulas(tmp_path, capsys):
    import json

    with pytest.raises(SystemExit):
        main(["explain", str(SEED002), "c1.grad.kernel[1,1]", "--width", "200"])
    out = capsys.readouterr().out
    assert "c1.delta[1,1]·i₁ + c1.delta[1,2]·i₂ + c1.delta[2,1]·i₄ + c1.delta[2,2]·i₅" in out and "nan" not in out
    sheet = tmp_path / "a.yaml"
    sheet.write_text('c1.delta[1,1]: "w2_1 * 2 * (w2_1*(i1*w1_1 + i2*w1_2 + i4*w1_3 + i5*w1_4) + '
                     'w2_2*(i2*w1_1 + i3*w1_2 + i5*w1_3 + i6*w1_4) + w2_3*(i4*w1_1 + i5*w1_2 + i7*w1_3 + i8*w1_4) + '
                     'w2_4*(i5*w1_1 + i6*w1_2 + i8*w1_3 + i9*w1_4) - y)"\n')
    with pytest.raises(SystemExit) as done:
        main(["check", str(SEED002), "--expected", str(sheet), "--format", "json"])
    assert done.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert "w²₁" in json.dumps(report, ensure_ascii=False) and '"right"' in json.dumps(report)


def test_a_scenario_in_numbers_checked_in_symbolic_arithmetic_is_checked_as_numbers():
    # no letters: the answers are numbers, as written (0.2507 rounded to 4 decimals is right)
    from bptrace.check import check_files
    report = check_files([ROOT / "scenarios/seed001_rounded.yaml"], arithmetic="symbolic")
    assert report.files[0].failed == 0 and report.files[0].passed == 25


def test_a_recurrent_layers_tanh_stays_a_formula_and_is_refused_in_exact_arithmetic():
    # recurrent.py takes tanh from formula.apply: a formula's tanh is tanh(3/5), not the
    # 16-digit rational of its float; in fractions it has no exact value (refused, named)
    import bptrace
    from bptrace.errors import ScenarioError
    trace = bptrace.run(ROOT / "scenarios/rnn_small.yaml", arithmetic="symbolic")
    assert str(trace["r.h"].exact.reshape(-1)[0]) == "tanh(3/5)"
    floats = bptrace.run(ROOT / "scenarios/rnn_small.yaml")
    for step in floats.steps:
        np.testing.assert_allclose(trace[step.name].values, step.values, rtol=1e-12, atol=1e-12)
    with pytest.raises(ScenarioError, match="needs tanh"):
        bptrace.run(ROOT / "scenarios/rnn_small.yaml", arithmetic="exact")


def test_a_float_met_in_symbolic_arithmetic_is_refused_not_taken_for_an_exact_number():
    # gelu takes 1/√2 as a float: its 17 digits are no exact number, so the step is refused
    # (before, the float became the rational 7071067811865476/10**16, shown as exact)
    import bptrace
    from bptrace.errors import ScenarioError
    with pytest.raises(ScenarioError, match="is a float, not an exact number"):
        bptrace.run(bptrace.loads("arithmetic: symbolic\ninput: [x]\nvalues: {x: 0.5}\n"
                                  "layers: [{type: gelu, name: g}]\nupstream: {delta: [1]}\n"))
