"""Rules as structured notation (bptrace/notation.py): every layer type, loss and optimizer
builds its rule as nodes; the text form is the rule as the terminal, the JSON export and the
checker write it (the golden files hold it), and LaTeX, Markdown and HTML render the same
nodes without reading any text back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import bptrace
from bptrace import notation as nt
from bptrace.layers import LAYERS
from bptrace.losses import LOSSES
from bptrace.render import latex
from bptrace.render.html import Page, anchor
from bptrace.render.markdown import render as markdown_render

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def _traces():
    """A trace of every shipped scenario and every PyTorch oracle case: together they use
    every registered layer type (tests/test_layers.py checks that)."""
    from test_oracle_torch import CASES
    for path in SCENARIOS:
        yield path.stem, bptrace.run(str(path))
    for name, text in CASES.items():
        yield name, bptrace.run(bptrace.loads(text))


def test_every_rule_is_notation_and_renders_in_every_format():
    types = set()
    for label, trace in _traces():
        kinds = {row.layer: row.type for row in trace.summary}
        steps = {step.name for step in trace.steps}
        for step in trace.steps:
            if step.phase in ("input", "parameter"):
                continue
            rule = step.notation
            assert isinstance(rule, nt.Node) and not isinstance(rule, nt.Text), (label, step.name, rule)
            assert nt.text(rule) == str(rule) == step.rule, (label, step.name)
            # every format renders it; LaTeX names are upright, never left as prose
            math = latex.math(rule, steps)
            assert latex.mixed(rule, steps) and latex.displayed(rule, steps)
            for name in nt.names(rule):
                assert latex.name(name) in math, (label, step.name, name)
            html = Page(None, steps).rule(rule, step.name)
            assert "Σ_" not in html, (label, step.name)
            for name in set(nt.names(rule)) & steps - {step.name}:
                assert f'href="#{anchor(name)}"' in html, (label, step.name, name)
            types.add(kinds.get(step.layer))
    assert set(LAYERS) <= types, f"layer types without a traced rule: {sorted(set(LAYERS) - types)}"


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_every_loss_writes_its_rules_as_notation(kind):
    loss, delta, out = nt.Ref("loss"), nt.Ref("h.delta"), nt.Ref("h.out")
    value, gradient = LOSSES[kind].value_rule(loss, out), LOSSES[kind].delta_rule(delta, out)
    assert value.lhs == loss and "h.out" in nt.names(value.rhs) and gradient.lhs.name == "h.delta"
    for rule in (value, gradient):
        math = latex.math(rule)
        assert all(latex.name(name) in math for name in nt.names(rule)) and r"\text{" not in math.split("=")[0]


def test_prose_in_a_rule_stays_prose_and_formulas_stay_math():
    trace = bptrace.run(str(ROOT / "scenarios" / "lstm_gomez.yaml"))
    # `(c[−1] = c0)` is a remark: read back from the text it was split into math and prose
    # at the wrong place (`(c[-1]=$ c0`); as notation it is the remark it was written as
    paragraph = latex.mixed(trace["lstm.c"].notation)
    assert paragraph.endswith(r"$  (c[\ensuremath{-}1] = c0)")
    assert r"\mathrm{lstm.gate.f}[t] \odot \mathrm{lstm.c}[t-1]" in latex.math(trace["lstm.c"].notation)
    # the words of a rule that name values are math wherever they stand (w0 was prose)
    trace = bptrace.run(str(ROOT / "scenarios" / "cs231n_sigmoid_neuron.yaml"))
    assert latex.math(trace["a.out"].notation) == r"\mathrm{a.out} = \mathrm{w0} \cdot \mathrm{x0}"


def test_html_links_every_name_of_a_rule_and_nothing_else():
    trace = bptrace.run(str(ROOT / "scenarios" / "cs231n_circuit.yaml"))
    steps = {step.name for step in trace.steps}
    html = Page(None, steps).rule(trace["f.local.q"].notation, "f.local.q")
    # the local gradient ∂f/∂q = z: z is the input z, linked to its step
    assert html == 'f.local.q = ∂f/∂q = <a href="#s-z">z</a>'
    html = Page(None, steps).rule(bptrace.run(str(ROOT / "scenarios" / "seed001.yaml"))["c1.out"].notation)
    assert "Σ<sub>u</sub> Σ<sub>v</sub> " in html and "&" not in html.replace("&amp;", "")


def test_the_json_rule_is_the_text_form():
    trace = bptrace.run(str(ROOT / "scenarios" / "seed001.yaml"))
    data = json.loads(trace.to_json())
    steps = data["steps"] if isinstance(data, dict) else data
    rules = {item["name"]: item["rule"] for item in steps}
    assert rules["c1.out"] == "c1.out[i,j] = Σ_u Σ_v c1.kernel[u,v] · input[i+u,j+v] + c1.bias"
    assert rules["p1.delta"] == "p1.delta = s1.delta ⊙ s1.out ⊙ (1 − s1.out)"


def test_markdown_typesets_the_notation():
    text = markdown_render(bptrace.run(str(ROOT / "scenarios" / "seed001.yaml")))
    assert r"\mathrm{c1.grad.kernel}[u,v] = \sum_{i}\sum_{j} \mathrm{c1.delta}[i,j]" in text


def test_text_form_of_each_node():
    x, out = nt.Ref("x", ("i",)), nt.Ref("s.out")
    assert str(nt.eq(out, nt.had(out, nt.Paren(nt.sub(1, out))))) == "s.out = s.out ⊙ (1 − s.out)"
    assert str(nt.Sum(("i", "j"), x)) == "Σ_i Σ_j x[i]" and str(nt.Sum((), x)) == "Σ x[i]"
    assert str(nt.Power(nt.Paren(x), "2")) == "(x[i])²" and str(nt.Power(nt.sym(0.9), "1", caret=True)) == "0.9^1"
    assert str(nt.Frac(nt.sym(1), nt.sym(4))) == "1/4" and str(nt.Frac(x, out, spaced=True)) == "x[i] / s.out"
    assert str(nt.partial(nt.Ref("loss"), out)) == "∂loss/∂s.out"
    assert nt.names(nt.eq(out, nt.prod(x, nt.Ref("w")))) == ["s.out", "x", "w"]
