"""The JSON Schema of scenario files: generated from the layer registry, it accepts every
scenario the project ships or tests with, and refuses nothing the loader accepts."""
from __future__ import annotations

import ast
import copy
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bptrace.cli import main
from bptrace.errors import ScenarioError
from bptrace.layers import LAYERS
from bptrace.scenario import TOP_KEYS, from_document, loads
from bptrace.schema import LAYER_KEY_TYPES, layer_keys, schema
from bptrace.source import Document, parse_text, read_document
from bptrace.template import NEW_SCENARIO
from conftest import ROOT, SCENARIOS

TESTS = Path(__file__).parent
BAD = sorted((TESTS / "bad").glob("*.yaml"))


def _jsonschema():
    try:
        import jsonschema
    except ImportError:
        if os.environ.get("BPTRACE_REQUIRE_TOOLS") == "1":
            pytest.fail("BPTRACE_REQUIRE_TOOLS=1 but jsonschema is not installed")
        pytest.skip("jsonschema is not installed (pip install -e '.[test]')")
    return jsonschema


@pytest.fixture(scope="module")
def validator():
    jsonschema = _jsonschema()
    generated = schema()
    jsonschema.Draft7Validator.check_schema(generated)
    return jsonschema.Draft7Validator(generated)


def test_every_key_of_every_layer_and_the_top_level_has_a_type():
    # the schema cannot drift: a key a layer takes but the table lacks is a test failure
    for kind, cls in LAYERS.items():
        for key in ("type", "name", "from", *cls.keys):
            assert key in LAYER_KEY_TYPES, f"bptrace/schema.py has no type for {kind}'s key {key!r}"
    properties = schema()["properties"]
    assert set(properties) == set(TOP_KEYS)
    branches = {b["if"]["properties"]["type"]["const"]: b["then"] for b in schema()["definitions"]["layer"]["allOf"]}
    assert set(branches) == set(LAYERS)
    for kind, then in branches.items():
        assert set(then["properties"]) == set(layer_keys(kind))
        assert then["additionalProperties"] is False


def test_a_key_without_a_type_is_refused_when_the_schema_is_made(monkeypatch):
    class Extra(LAYERS["conv"]):
        keys = LAYERS["conv"].keys | {"padding_mode"}

    monkeypatch.setitem(LAYERS, "conv", Extra)
    with pytest.raises(KeyError, match="padding_mode"):
        schema()


def _test_scenarios():
    """Every scenario written as a string literal in the test files that the loader accepts
    (the test suite's own valid scenarios), besides the shipped ones and `bptrace new`'s."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "layers:" in node.value:
                try:
                    loads(node.value)
                except ScenarioError:
                    continue
                found.append((f"{path.name}:{node.lineno}", node.value))
    return found


def test_every_shipped_and_test_scenario_is_valid(validator):
    documents = [(path.name, read_document(path).data) for path in SCENARIOS]
    documents.append(("bptrace new", parse_text(NEW_SCENARIO).data))
    tested = _test_scenarios()
    assert len(tested) >= 20, "the test files should hold many valid scenarios"
    documents += [(where, parse_text(text).data) for where, text in tested]
    for where, data in documents:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
        assert not errors, f"{where}: {errors[:3]}"


def _loader_refuses(data) -> bool:
    try:
        from_document(Document(data=data))
    except ScenarioError:
        return True
    return False


def test_what_the_schema_refuses_in_the_bad_corpus_the_loader_refuses(validator):
    refused = 0
    for path in BAD:
        try:
            doc = read_document(path)
        except ScenarioError:
            continue        # not even YAML the loader reads: nothing for the schema to judge
        if not validator.is_valid(doc.data):
            refused += 1
            assert _loader_refuses(doc.data), f"{path.name}: the schema refuses it but the loader runs it"
    assert refused >= len(BAD) // 3, f"the schema catches only {refused} of {len(BAD)} bad files"


MUTATIONS = [
    ("drop", "layers"), ("drop", "input"), ("set", "learning_rate", -0.1), ("set", "learning_rate", "fast"),
    ("set", "bptrace", 2), ("set", "conventions", {"kernel": "flipped"}), ("set", "tolerance", -1),
    ("set", "unknown_key", 1), ("set", "name", None), ("set", "description", None), ("set", "tolerance", None),
    ("set", "rounding", {"decimals": 21}), ("set", "rounding", {"decimals": 3, "mode": "up"}),
    ("set", "init", {"scheme": "he_normal"}), ("set", "loss", {"type": "hinge", "target": [1]}),
    ("layer", "type", "maxpoool"), ("layer", "name", "input"), ("layer", "name", None), ("layer", "name", "2x"),
    ("layer", "stride", 0), ("layer", "stride", [1, 2, 3]), ("layer", "padding", -1), ("layer", "size", 1.5),
    ("layer", "from", []), ("layer", "kernel", "big"), ("layer", "bias", []), ("layer", "groups", 0),
    ("layer", "slope", "steep"), ("layer", "axis", "rows"), ("layer", "dilation", 2), ("layer", "out", 0),
]


def _mutated(data: dict, mutation) -> dict:
    data = copy.deepcopy(data)
    kind, key, *value = mutation
    if kind == "drop":
        data.pop(key, None)
    elif kind == "set":
        data[key] = value[0]
    else:
        data["layers"][0][key] = value[0]
    return data


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_what_the_schema_refuses_among_mutated_scenarios_the_loader_refuses(validator, path):
    # the converse need not hold: the loader checks shapes and names a schema cannot
    data = read_document(path).data
    for mutation in MUTATIONS:
        changed = _mutated(data, mutation)
        if not validator.is_valid(changed):
            assert _loader_refuses(changed), f"{path.name} with {mutation}: refused by the schema only"


def test_schema_command_prints_the_schema_and_writes_it(tmp_path):
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == schema()
    out = tmp_path / "bptrace.schema.json"
    assert CliRunner().invoke(main, ["schema", "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == schema()


def test_new_points_editors_at_the_schema(tmp_path):
    target = tmp_path / "problem.yaml"
    assert CliRunner().invoke(main, ["new", "-o", str(target)]).exit_code == 0
    first = target.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=bptrace.schema.json"
    assert "bptrace schema -o bptrace.schema.json" in target.read_text().splitlines()[1]


def test_the_schema_completes_layer_types_and_their_keys():
    # what an editor offers inside `- {type: conv, ...}`: the registry's types and conv's keys
    layer = schema()["definitions"]["layer"]
    assert layer["properties"]["type"]["enum"] == list(LAYERS)
    conv = next(b["then"] for b in layer["allOf"] if b["if"]["properties"]["type"]["const"] == "conv")
    assert {"kernel", "bias", "stride", "padding", "groups"} <= set(conv["properties"])
    assert all("description" in fragment or "$ref" in fragment for fragment in conv["properties"].values())


def test_shell_completion_script():
    result = CliRunner().invoke(main, [], prog_name="bptrace", env={"_BPTRACE_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_bptrace_completion()" in result.output and "complete " in result.output
    result = CliRunner().invoke(main, [], prog_name="bptrace", env={"_BPTRACE_COMPLETE": "zsh_source"})
    assert "#compdef bptrace" in result.output


def test_shell_completion_offers_the_scenario_s_trace_names():
    env = {"_BPTRACE_COMPLETE": "bash_complete", "COMP_WORDS": f"bptrace explain {ROOT}/scenarios/seed001.yaml c1.g",
           "COMP_CWORD": "3"}
    result = CliRunner().invoke(main, [], prog_name="bptrace", env=env)
    assert result.output.split() == ["plain,c1.grad.kernel", "plain,c1.grad.bias"]
    env["COMP_WORDS"] = f"bptrace run {ROOT}/scenarios/seed001.yaml --only p1."
    result = CliRunner().invoke(main, [], prog_name="bptrace", env=env | {"COMP_CWORD": "4"})
    assert result.output.split() == ["plain,p1.out", "plain,p1.delta"]
