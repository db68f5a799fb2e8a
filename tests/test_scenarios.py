"""The shipped scenarios: each runs in text and JSON, and each reproduces what its source says.

Oracles here are the sources themselves (numbers they printed, kept in each scenario's
`expected:`, compared at the precision they were written with) and arithmetic done in the
test from the scenario's own numbers; never the engine's output.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bptrace.cli import main
from bptrace.engine import run
from bptrace.scenario import load, parse_element
from bptrace.tensors import canonical_index, squeezed_shape
from conftest import ROOT, SCENARIOS

PARAMS = ("kernel", "weights", "bias")


def ids(paths):
    return [path.stem for path in paths]


def brief_name(name: str, layers: set) -> bool:
    """Whether `name` is one of BRIEF section 2's names for a network with these layers, or
    section 8's (a `step{k}.` prefix, the loss's parts, optimizer state by PyTorch's keys)."""
    name = re.sub(r"^step[1-9]\d*\.", "", name)
    if name in ("input", "loss", "input.delta", "loss.data", "loss.l2"):
        return True
    layer, _, rest = name.partition(".")
    if layer not in layers:
        return False
    states = "momentum_buffer|exp_avg|exp_avg_sq|square_avg|grad_avg|sum"
    return rest in ("out", "delta") + PARAMS or bool(re.fullmatch(rf"(grad|new)\.({'|'.join(PARAMS)})", rest)) \
        or bool(re.fullmatch(rf"state\.({'|'.join(PARAMS)})\.({states})", rest))


def test_the_seed_scenarios_are_shipped():
    shipped = {path.name for path in SCENARIOS}
    assert {"seed001.yaml", "seed001_rounded.yaml", "seed002_two_convs.yaml", "zhang2016.yaml",
            "seed000_batch.yaml", "seed000_1d.yaml"} <= shipped


@pytest.mark.parametrize("path", SCENARIOS, ids=ids(SCENARIOS))
def test_header_names_the_source(path):
    header = path.read_text(encoding="utf-8").split("\nbptrace:")[0]
    assert header.startswith("# Source:") or header.startswith("# Not from a source"), \
        f"{path.name} does not begin with a comment naming its source"


@pytest.mark.parametrize("path", SCENARIOS, ids=ids(SCENARIOS))
def test_runs_as_json_with_brief_names(path):
    result = CliRunner().invoke(main, ["run", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["bptrace"] == 1
    assert set(data) >= {"name", "conventions", "summary", "steps", "loss"}
    assert set(data["conventions"]) == {"kernel", "flatten", "index_base"}
    layers = {row["layer"] for row in data["summary"]} - {"input"}
    names = [step["name"] for step in data["steps"]]
    assert len(names) == len(set(names))
    for step in data["steps"]:
        assert brief_name(step["name"], layers), f"{step['name']} is not a BRIEF section 2 name"
        assert step["phase"] in ("input", "parameter", "forward", "loss", "backward", "update")
        # `values` is the canonical `shape` with its length-1 axes dropped
        assert np.shape(step["values"]) == squeezed_shape(step["shape"]), step["name"]
    # the backward pass reaches the input, and every parameter gets a gradient
    first = "step1." if data["steps"][0]["name"].startswith("step1.") else ""   # `steps: N`, N ≥ 2
    assert f"{first}input.delta" in names
    for name in names:
        prefix, bare = re.match(r"(step\d+\.)?(.*)", name).groups()
        layer, _, role = bare.partition(".")
        if role in PARAMS:
            assert f"{prefix or ''}{layer}.grad.{role}" in names


@pytest.mark.parametrize("path", SCENARIOS, ids=ids(SCENARIOS))
def test_runs_as_text(path):
    result = CliRunner().invoke(main, ["run", str(path), "--width", "100"])
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    for name in ("input.delta", "loss" if "loss:" in path.read_text(encoding="utf-8") else "input"):
        assert name in result.output


def _decimals(text: str) -> int:
    exponent = Decimal(text.strip()).as_tuple().exponent
    return max(-exponent, 0)


def _written_numbers(doc, path, value):
    """(index, value, decimals as written) for every number under `path` in the document."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            for index, number, decimals in _written_numbers(doc, path + (i,), item):
                yield (i,) + index, number, decimals
    else:
        yield (), float(value), _decimals(doc.raw[path])


SCENARIOS_WITH_ANSWERS = [path for path in SCENARIOS if "\nexpected:" in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", SCENARIOS_WITH_ANSWERS, ids=ids(SCENARIOS_WITH_ANSWERS))
def test_expected_numbers_are_reproduced_as_written(path):
    """Every number a source printed (kept in `expected:`) equals the trace rounded to the
    decimals it was printed with."""
    scenario = load(path)
    trace = run(scenario)
    base = scenario.conventions.index_base
    compared = 0
    for key, value in scenario.expected.items():
        name, element = parse_element(key)
        shown = trace[name].shown
        for index, number, decimals in _written_numbers(scenario.document, ("expected", key), value):
            at = canonical_index(trace[name].shape, element, base) if element is not None else None
            computed = trace[name].values[at] if at is not None else shown[index]
            assert abs(float(computed) - number) <= 0.5 * 10.0 ** -decimals + 1e-12, \
                f"{key}{list(index) if index else ''}: source {number}, trace {float(computed)}"
            compared += 1
    assert compared > 0


def test_seed001_rounded_reproduces_the_answers_kernel_gradient():
    trace = run(load(ROOT / "scenarios/seed001_rounded.yaml"))
    # the answer's printed array, to the last digit it printed
    np.testing.assert_allclose(trace["c1.grad.kernel"].shown, [[0.044606, 0.094061], [0.011262, 0.068288]],
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(trace["p1.delta"].shown, [[0.0364, 0.0686], [0.0467, -0.0681]])


def test_zhang_summary_counts_3898_parameters():
    path = ROOT / "scenarios/zhang2016.yaml"
    result = CliRunner().invoke(main, ["run", str(path), "--format", "json", "--only", "loss"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    # Zhang 2016 section 1.1: (5·5 + 1)·6 + (5·5·6 + 1)·12 + 10·192 + 10 = 3898
    assert sum(row["params"] for row in summary) == 3898
    assert {row["layer"]: row["params"] for row in summary if row["params"]} == \
        {"C1": 26 * 6, "C2": 151 * 12, "FC": 10 * 192 + 10}
    text = CliRunner().invoke(main, ["run", str(path), "--only", "loss", "--width", "120"])
    assert text.exit_code == 0, text.output
    assert re.search(r"3[,\u202f ]?898", text.output), "the text summary does not show the total 3898"


def test_seed002_first_kernel_gradient_is_four_pixel_weight_error_terms():
    """∂C/∂w¹₁ = Σ_k i_k · w²_k · 2(o² − y) over the four pixels under w¹₁ (the asker's
    question), worked here from the scenario's numbers with numpy."""
    path = ROOT / "scenarios/seed002_two_convs.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    image = np.array(spec["input"], dtype=float)
    w1, w2 = (np.array(layer["kernel"], dtype=float) for layer in spec["layers"])
    y = float(spec["loss"]["target"])
    o1 = np.array([[np.sum(w1 * image[i:i + 2, j:j + 2]) for j in range(2)] for i in range(2)])
    o2 = float(np.sum(w2 * o1))
    error = 2 * (o2 - y)
    wanted = {(0, 0, i, j): image[i, j] * w2[i, j] * error for i in range(2) for j in range(2)}

    step = run(load(path))["c1.grad.kernel"]
    terms = step.expansions[(0, 0, 0, 0)].terms
    assert len(terms) == 4
    got = {}
    for term in terms:
        delta, pixel = term
        assert delta.name == "c1.delta" and pixel.name == "input"
        assert delta.index == pixel.index   # w¹₁ meets the pixel under the output it made
        got[pixel.index] = delta.value * pixel.value
    assert got.keys() == wanted.keys()
    for at in wanted:
        assert got[at] == pytest.approx(wanted[at], abs=1e-12)
    assert step.values[0, 0, 0, 0] == pytest.approx(sum(wanted.values()), abs=1e-12)
    # and the asker's product of two sums is a different number
    assert sum(wanted.values()) != pytest.approx(image[:2, :2].sum() * w2.sum() * error)
