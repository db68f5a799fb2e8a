"""`bptrace exercise`: templates drawn into variants (scenario, question sheet, answer key,
answers file), rosters, constraints, and the PrairieLearn question folder.

The asked numbers are compared with an oracle written here in exact rational arithmetic
from the variant's written decimals (seed 001's network by hand: dense backward, sigmoid
from the given outputs, max-pool routing, the kernel gradient as a correlation), never with
numbers bptrace produced."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import bptrace
from bptrace.cli import main
from bptrace.errors import ScenarioError
from bptrace.exercise import FILES, draw, exercise_files, load_template, student_seed
from conftest import ROOT

TEMPLATE = ROOT / "templates/seed001_exercise.yaml"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def exact(text_values):
    """Nested lists of YAML numbers -> numpy object array of Fractions of their written text."""
    return np.array(text_values, dtype=object)


def fractions_of(path):
    """The variant's numbers as exact fractions: read as text, never through a float."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: Fraction(node.value))
    Loader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: Fraction(node.value))
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)


def seed001_oracle(data):
    """p1.delta and c1.grad.kernel of seed 001's network, exactly, and whether a pool window tied."""
    x = np.array(data["input"], dtype=object)
    conv = data["layers"][0]
    k, b = np.array(conv["kernel"], dtype=object), conv["bias"]
    out = np.array([[sum(k[u, v] * x[i + u, j + v] for u in range(2) for v in range(2)) + b
                     for j in range(4)] for i in range(4)], dtype=object)
    w = np.array(data["layers"][4]["weights"], dtype=object)
    hdelta = np.array(data["upstream"]["delta"], dtype=object)
    s = np.array(data["given"]["s1.out"], dtype=object)
    fdelta = np.array([sum(w[r, c] * hdelta[r] for r in range(2)) for c in range(4)], dtype=object)
    p1delta = fdelta.reshape(2, 2) * s * (1 - s)
    c1delta = np.full((4, 4), Fraction(0), dtype=object)
    tie = False
    for i in range(2):
        for j in range(2):
            window = [(out[2 * i + a, 2 * j + c], (2 * i + a, 2 * j + c)) for a in range(2) for c in range(2)]
            best = max(value for value, _ in window)
            tie |= sum(1 for value, _ in window if value == best) > 1
            c1delta[next(at for value, at in window if value == best)] += p1delta[i, j]
    grad = np.array([[sum(c1delta[i, j] * x[i + u, j + v] for i in range(4) for j in range(4))
                      for v in range(2)] for u in range(2)], dtype=object)
    return p1delta, grad, tie


def write(tmp_path, text, name="t.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- one variant ------------------------------------------------------------------------------

def test_same_seed_same_files_and_another_seed_other_numbers(tmp_path):
    for folder in ("a", "b"):
        result = cli("exercise", TEMPLATE, "--seed", 7, "-o", tmp_path / folder)
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(["variant.yaml", "sheet.md", "sheet.tex", "sheet.html", "key.md", "key.tex",
                            "key.html", "answers.yaml"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = exercise_files(load_template(TEMPLATE), 8)
    assert other["variant.yaml"] != (tmp_path / "a/variant.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("seed", [0, 7, 12345, 2 ** 63])
def test_a_variant_runs_alone_and_its_answers_are_exactly_the_oracle(tmp_path, seed):
    assert cli("exercise", TEMPLATE, "--seed", seed, "-o", tmp_path / "v").exit_code == 0
    variant = tmp_path / "v/variant.yaml"
    text = variant.read_text(encoding="utf-8")
    assert f"seed {seed}" in text and "vary" not in text and "ask:" not in text
    # grid numbers written as decimals, never as float noise
    assert not re.search(r"\.\d{6}", text)
    run = cli("run", variant, "--only", "p1.delta")
    assert run.exit_code == 0, run.output
    p1delta, grad, tie = seed001_oracle(fractions_of(variant))
    assert not tie                                   # constraints.no_pool_ties
    answers = yaml.safe_load((tmp_path / "v/answers.yaml").read_text(encoding="utf-8"))
    raw = (tmp_path / "v/answers.yaml").read_text(encoding="utf-8")
    for name, want in (("p1.delta", p1delta), ("c1.grad.kernel", grad)):
        written = re.search(rf"^{re.escape(name)}: (.*)$", raw, re.M).group(1)
        texts = re.findall(r"-?\d+(?:\.\d+)?", written)
        assert [Fraction(t) for t in texts] == list(want.reshape(-1)), name
        assert all(len(t.partition(".")[2]) <= 5 for t in texts)    # constraints.max_decimals: 5
        assert np.asarray(answers[name]).shape == want.shape


def test_the_answers_file_is_graded_right_and_a_one_digit_change_fails(tmp_path):
    assert cli("exercise", TEMPLATE, "--seed", 3, "-o", tmp_path / "v").exit_code == 0
    variant, answers = tmp_path / "v/variant.yaml", tmp_path / "v/answers.yaml"
    result = cli("check", variant, "--expected", answers)
    assert result.exit_code == 0, result.output
    assert "8 passed, 0 failed" in result.output
    text = answers.read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("c1.grad.kernel"))
    digit = re.search(r"\d(?=[,\]])", line)                # the last digit of the first number
    changed = line[:digit.start()] + str((int(digit.group()) + 1) % 10) + line[digit.end():]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace(line, changed), encoding="utf-8")
    result = cli("check", variant, "--expected", wrong)
    assert result.exit_code == 1, result.output
    assert "7 passed, 1 failed" in result.output


def test_the_sheet_shows_the_network_the_given_numbers_and_blank_matrices(tmp_path):
    files = exercise_files(load_template(TEMPLATE), 5)
    variant = bptrace.load(files["variant.yaml"])
    first_input = str(float(variant.input.reshape(-1)[0])).rstrip("0").rstrip(".")
    for name in ("sheet.md", "sheet.tex", "sheet.html"):
        sheet = files[name]
        for word in ("c1", "maxpool", "p1.delta", "c1.grad.kernel", "0.7"):
            assert word in sheet.replace(r"\_", "_"), (name, word)
        assert first_input.replace("-", "") in sheet, name
    # blank: none of the answers' numbers is on the sheet
    answers = yaml.safe_load(files["answers.yaml"])
    for value in np.asarray(answers["c1.grad.kernel"]).reshape(-1):
        assert repr(float(value)) not in files["sheet.md"] + files["sheet.html"]
    assert files["sheet.html"].count('<table class="blank">') == 2
    assert files["sheet.md"].count("&nbsp;") and files["sheet.tex"].count(r"\cline") >= 6
    # the key is the worked solution of the asked steps only
    assert "c1.grad.kernel" in files["key.md"] and "input.delta" not in files["key.md"]
    assert "h.grad.weights" not in files["key.html"]


def test_the_latex_sheet_and_key_compile(tmp_path):
    from test_render_latex import OVERFULL_POINTS, compile_tex, worst_overfull

    # a roster's seed has 20 digits: the title that carries it still fits the page
    files = exercise_files(load_template(TEMPLATE), 11412288088629783350)
    for stem in ("sheet", "key"):
        log = compile_tex(tmp_path, files[f"{stem}.tex"], stem)
        assert worst_overfull(log) <= OVERFULL_POINTS, f"{stem}: a line is {worst_overfull(log)}pt wider than the page"


# --- rosters ----------------------------------------------------------------------------------

def test_a_roster_gives_each_student_a_recorded_seed_of_their_own(tmp_path):
    roster = write(tmp_path, "name,id\nAda Lovelace,s001\nAlan Turing,s002\nGrace Hopper,s003\n", "class.csv")
    result = cli("exercise", TEMPLATE, "--roster", roster, "-o", tmp_path / "hw")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "hw/roster.csv").open(encoding="utf-8")))
    assert [row["student"] for row in rows] == ["s001", "s002", "s003"]
    template_text = TEMPLATE.read_text(encoding="utf-8")
    seeds = []
    for row in rows:
        digest = hashlib.sha256(b"bptrace exercise\0" + template_text.encode() + b"\0" + row["student"].encode())
        assert int(row["seed"]) == int.from_bytes(digest.digest()[:8], "big")
        variant = (tmp_path / "hw" / row["variant_yaml"]).read_text(encoding="utf-8")
        assert f"seed {row['seed']}" in variant
        assert (tmp_path / "hw" / row["answers_yaml"]).exists()
        seeds.append(int(row["seed"]))
        result = cli("check", tmp_path / "hw" / row["variant_yaml"], "--expected", tmp_path / "hw" / row["answers_yaml"])
        assert result.exit_code == 0
    assert len(set(seeds)) == 3
    texts = {(tmp_path / "hw" / row["variant_yaml"]).read_text(encoding="utf-8").split("\n", 2)[2] for row in rows}
    assert len(texts) == 3
    # the same roster again: the same seeds; a changed template: new ones
    changed = load_template(None, text=template_text.replace("step: 0.1", "step: 0.2"))
    assert student_seed(load_template(TEMPLATE), "s001") == seeds[0] != student_seed(changed, "s001")


def test_a_roster_refuses_ids_that_would_share_a_folder(tmp_path):
    roster = write(tmp_path, "id\na/b\na_b\n", "class.csv")
    result = cli("exercise", TEMPLATE, "--roster", roster, "-o", tmp_path / "hw")
    assert result.exit_code == 2 and "share the folder" in result.output
    assert not (tmp_path / "hw").exists()


def test_a_roster_refuses_ids_whose_folders_differ_only_in_case(tmp_path):
    # macOS's and Windows's file systems ignore case: one student's folder would hold the other's
    roster = write(tmp_path, "email\nAda@uni.edu\nada@uni.edu\n", "class.csv")
    result = cli("exercise", TEMPLATE, "--roster", roster, "-o", tmp_path / "hw")
    assert result.exit_code == 2 and "share the folder" in result.output
    assert not (tmp_path / "hw").exists()


# --- constraints ------------------------------------------------------------------------------

RELU_TEMPLATE = """\
name: relu exercise
input: [1, 0, -1]
layers:
  - {type: dense, name: d, weights: [[1, 1, 0], [0, 1, 1]], bias: [0, 0]}
  - {type: relu, name: r}
upstream: {layer: r, delta: [1, -1]}
vary:
  input: {values: [-1, 0, 1]}
  d.weights: {values: [-1, 0, 1]}
ask: [d.grad.weights]
constraints: {no_relu_at_zero: true}
"""


def test_no_relu_at_zero_redraws_until_no_relu_input_is_zero(tmp_path):
    template = load_template(write(tmp_path, RELU_TEMPLATE))
    draws = []
    for seed in range(12):
        variant = draw(template, seed)
        data = yaml.safe_load(variant.text)
        x, w = np.array(data["input"], dtype=object), np.array(data["layers"][0]["weights"], dtype=object)
        assert all(value != 0 for value in w.dot(x))         # the relu's inputs, worked here
        draws.append(variant.draws)
    assert max(draws) > 1                                   # the constraint did redraw


def test_ties_are_redrawn_and_an_impossible_constraint_gives_up_clearly(tmp_path):
    text = TEMPLATE.read_text(encoding="utf-8")
    coarse = text.replace("input: {low: -1, high: 1, step: 0.1}", "input: {values: [0, 1]}")
    template = load_template(write(tmp_path, coarse))
    draws = []
    for seed in range(8):
        variant = draw(template, seed)
        assert not seed001_oracle(fractions_of(write(tmp_path, variant.text, "v.yaml")))[2]
        draws.append(variant.draws)
    assert max(draws) > 1                                   # ties with 0s and 1s are common: redrawn
    impossible = write(tmp_path, coarse.replace("values: [0, 1]}", "values: [0.5]}")
                       .replace("max_decimals: 5", "max_decimals: 5\n  max_draws: 25"), "never.yaml")
    result = cli("exercise", impossible, "--seed", 1, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "no draw of seed 1 met the constraints in 25 draws (a max-pool tie: 25)" in result.output
    assert not (tmp_path / "out").exists()


def test_max_decimals_is_judged_exactly_not_on_float_noise(tmp_path):
    # 0.1·0.3 is 0.030000000000000002 in floats and exactly 0.03 on paper
    text = """\
name: noise
input: [0.1, 0.7]
layers: [{type: dense, name: d, weights: [[0.3, 0.3]], bias: [0]}]
upstream: {layer: d, delta: [0.3]}
vary: {input: {values: [0.1, 0.7]}}
ask: [d.grad.weights]
constraints: {max_decimals: 2}
"""
    variant = draw(load_template(write(tmp_path, text)), 4)
    data = yaml.safe_load(variant.text)
    want = [Fraction(str(x)) * Fraction("0.3") for x in data["input"]]
    assert variant.answers["d.grad.weights"] == [str(Decimal(w.numerator) / w.denominator) for w in want]
    # asking for a number only a sigmoid reaches: never a short decimal; a clear error
    sigmoid = text.replace("bias: [0]}]", "bias: [0]}, {type: sigmoid, name: s}]").replace(
        "layer: d, delta", "layer: s, delta").replace("d.grad.weights", "d.delta")
    with pytest.raises(ScenarioError, match=r"more than 2 decimals: 1000\)"):
        draw(load_template(write(tmp_path, sigmoid, "s.yaml")), 0)


# --- bad templates ----------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, words", [
    ("  c1.kernel: {values", "  c1.kernal: {values", "vary.c1.kernal: 'c1.kernal' is not a value"),
    ("{low: -1, high: 1, step: 0.1}", "{low: -1, hihg: 1, step: 0.1}", "vary.input.hihg: unknown key"),
    ("step: 0.1}", "step: -0.1}", "vary.input.step: `step` must be positive"),
    ("values: [-1, -0.5, 0.5, 1]", "values: []", "vary.c1.kernel.values"),
    ("ask: [p1.delta, c1.grad.kernel]", "ask: [p1.delta, c1.grad.kernle]", "did you mean 'c1.grad.kernel'?"),
    ("ask: [p1.delta, c1.grad.kernel]", "ask: [c1.kernel]", "a number the scenario writes"),
    ("no_pool_ties: true", "no_pool_tie: true", "constraints.no_pool_tie: unknown constraint"),
    ("max_decimals: 5 ", "max_decimals: 40 ", "from 0 to 12"),
    ("type: maxpool", "type: maxpoool", "layers[1]"),
])
def test_a_bad_template_is_a_located_error_and_writes_nothing(tmp_path, old, new, words):
    text = TEMPLATE.read_text(encoding="utf-8")
    assert old in text
    bad = text.replace(old, new, 1)
    where = f":{bad[:bad.index(new)].count(chr(10)) + 1}:"
    path = write(tmp_path, bad)
    result = cli("exercise", path, "--seed", 1, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"t.yaml{where}" in result.output and words in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_the_default_folder_is_named_after_the_template_and_the_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("exercise", TEMPLATE, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "seed001_exercise-3").iterdir()) == sorted(FILES)
    assert result.output.startswith("wrote seed001_exercise-3: ")


def test_the_command_line_asks_for_a_seed_or_a_roster_and_keeps_existing_folders(tmp_path):
    assert cli("exercise", TEMPLATE).exit_code == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    result = cli("exercise", TEMPLATE, "--seed", 1, "-o", tmp_path / "full")
    assert result.exit_code == 2 and "not an empty folder" in result.output
    # the folder is what is wrong, not the template: the message starts with the folder
    assert result.output.startswith(f"error: {tmp_path / 'full'} already exists"), result.output
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert cli("exercise", TEMPLATE, "--seed", 1, "--format", "prairielearn").exit_code == 2


# --- PrairieLearn -----------------------------------------------------------------------------

def _server(folder):
    spec = importlib.util.spec_from_file_location(f"server_{abs(hash(str(folder)))}", folder / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prairielearn_question_generates_and_grades_with_bptrace(tmp_path):
    for folder in ("q", "q2"):
        result = cli("exercise", TEMPLATE, "--format", "prairielearn", "-o", tmp_path / folder)
        assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "q/info.json").read_text(encoding="utf-8"))
    assert info["type"] == "v3" and info["title"] and info["topic"] and isinstance(info["tags"], list)
    assert info["uuid"] == json.loads((tmp_path / "q2/info.json").read_text(encoding="utf-8"))["uuid"]
    question = (tmp_path / "q/question.html").read_text(encoding="utf-8")
    assert question.count("<pl-matrix-input") == 2
    assert 'answers-name="p1_delta"' in question and 'answers-name="c1_grad_kernel"' in question

    server = _server(tmp_path / "q")
    data = {"variant_seed": 987654, "params": {}, "correct_answers": {}, "options": {}}
    server.generate(data)
    again = {"variant_seed": 987654, "params": {}, "correct_answers": {}}
    server.generate(again)
    assert again["params"]["variant"] == data["params"]["variant"]
    assert "<table" in data["params"]["sheet"] and "0.7" in data["params"]["sheet"]
    # the correct answers are the oracle's, worked from the variant's written numbers
    variant = write(tmp_path, data["params"]["variant"], "variant.yaml")
    p1delta, grad, _ = seed001_oracle(fractions_of(variant))
    correct = data["correct_answers"]
    assert correct["p1_delta"]["_type"] == "ndarray"
    assert np.allclose(np.array(correct["p1_delta"]["_value"], dtype=float), p1delta.astype(float), rtol=0, atol=1e-15)
    assert np.allclose(np.array(correct["c1_grad_kernel"]["_value"], dtype=float), grad.astype(float), rtol=0, atol=1e-15)

    data["submitted_answers"] = {"p1_delta": correct["p1_delta"],
                                 "c1_grad_kernel": {"_type": "ndarray", "_dtype": "float64",
                                                    "_value": [[float(v) for v in row] for row in grad]}}
    data["partial_scores"] = {}
    server.grade(data)
    assert data["score"] == 1.0
    assert data["partial_scores"]["c1_grad_kernel"]["score"] == 1.0

    wrong = [[float(v) for v in row] for row in grad]
    wrong[0][1] = -wrong[0][1] if wrong[0][1] else 1.0
    data["submitted_answers"]["c1_grad_kernel"] = {"_type": "ndarray", "_value": wrong, "_dtype": "float64"}
    server.grade(data)
    assert data["partial_scores"]["c1_grad_kernel"]["score"] == 0.75
    assert "c1.grad.kernel[0,1]" in data["partial_scores"]["c1_grad_kernel"]["feedback"]
    assert data["score"] == pytest.approx(0.875)
    data["submitted_answers"].pop("p1_delta")
    server.grade(data)
    assert data["partial_scores"]["p1_delta"]["score"] == 0.0


def test_the_prairielearn_feedback_never_says_right_for_an_answer_that_scored_nothing(tmp_path):
    # a missing or wrong-shape matrix scores 0: the submission panel's feedback says why,
    # not "every number right"
    assert cli("exercise", TEMPLATE, "--format", "prairielearn", "-o", tmp_path / "q").exit_code == 0
    server = _server(tmp_path / "q")
    data = {"variant_seed": 5, "params": {}, "correct_answers": {}, "options": {}}
    server.generate(data)
    data["submitted_answers"] = {"p1_delta": {"_type": "ndarray", "_value": [[1.0, 2.0, 3.0]], "_dtype": "float64"}}
    data["partial_scores"] = {}
    server.grade(data)
    assert data["score"] == 0.0
    feedback = data["feedback"]["bptrace"]
    assert "every number right" not in feedback
    assert "p1.delta" in feedback and "c1.grad.kernel" in feedback


def test_the_python_api_draws_the_same_variant_as_the_command(tmp_path):
    assert cli("exercise", TEMPLATE, "--seed", 21, "-o", tmp_path / "v").exit_code == 0
    variant = bptrace.variant(str(TEMPLATE), 21)
    assert variant.text == (tmp_path / "v/variant.yaml").read_text(encoding="utf-8")
    assert variant.trace["c1.grad.kernel"].shape == (1, 1, 2, 2)


def test_the_readme_answers_example_is_what_seed_7_writes():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Exercises\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```\n(p1\.delta.*?)^```", section, re.M | re.S).group(1)
    written = exercise_files(load_template(TEMPLATE), 7)["answers.yaml"]
    assert block.strip() == "\n".join(line for line in written.splitlines() if not line.startswith("#"))


def test_a_rounded_step_s_answers_are_its_rounded_numbers(tmp_path):
    # `rounding:` replaces p1.delta by its 3-decimal rounding; c1.delta goes on from those
    text = TEMPLATE.read_text(encoding="utf-8").replace("max_decimals: 5 ", "max_decimals: 4 ").replace(
        "ask: [p1.delta, c1.grad.kernel]",
        "ask: [p1.delta, c1.delta]\nrounding: {decimals: 3, mode: half_up, apply: [p1.delta]}")
    path = write(tmp_path, text)
    assert cli("exercise", path, "--seed", 3, "-o", tmp_path / "v").exit_code == 0
    p1delta, _, _ = seed001_oracle(fractions_of(tmp_path / "v/variant.yaml"))
    answers = yaml.safe_load((tmp_path / "v/answers.yaml").read_text(encoding="utf-8"))
    rounded = [Decimal(v.numerator) / Decimal(v.denominator) for v in p1delta.reshape(-1)]
    rounded = [float(d.quantize(Decimal("0.001"), rounding="ROUND_HALF_UP")) for d in rounded]
    assert np.asarray(answers["p1.delta"], dtype=float).reshape(-1).tolist() == rounded
    assert sorted(np.asarray(answers["c1.delta"], dtype=float).reshape(-1).tolist()) == sorted(rounded + [0.0] * 12)
    result = cli("check", tmp_path / "v/variant.yaml", "--expected", tmp_path / "v/answers.yaml")
    assert result.exit_code == 0, result.output


# --- mutated templates ------------------------------------------------------------------------

GRIDS = [{"low": -1, "high": 1, "step": 0.5}, {"values": [1, -1]}, {"values": []}, {"values": "x"},
         {"low": 1, "high": 0, "step": 0.1}, {"low": 0, "high": 1, "step": 0}, {"low": 0, "high": 1e9, "step": 1e-9},
         {"low": "a", "high": 1, "step": 0.1}, {"low": 0, "step": 0.1}, {"values": [0.5], "low": 0},
         {"values": [True]}, {"values": [0]}, [1, 2], 3, None, "grid", {"values": [1e308, -1e308]}]
NAMES = ["input", "c1.kernel", "c1.bias", "h.weights", "h.bias", "upstream.delta", "loss.target", "p1.delta",
         "c1.grad.kernel", "c1.delta", "input.delta", "h.delta", "s1.out", "c1.kernel[0,0]", "zz", "", 3, None]
CONSTRAINTS = [("no_pool_ties", True), ("no_pool_ties", "yes"), ("no_relu_at_zero", True), ("max_decimals", 0),
               ("max_decimals", 3), ("max_decimals", 13), ("max_decimals", -1), ("max_decimals", 2.5),
               ("max_draws", 0), ("max_draws", 5), ("ties", True)]


def _mutated(rng, base):
    import copy

    data = copy.deepcopy(base)
    data["constraints"] = dict(data.get("constraints") or {}, max_draws=20)
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(0, 7)
        if kind == 0 and isinstance(data.get("vary"), dict):
            data["vary"][NAMES[rng.integers(len(NAMES))]] = copy.deepcopy(GRIDS[rng.integers(len(GRIDS))])
        elif kind == 1 and isinstance(data.get("vary"), dict) and data["vary"]:
            data["vary"].pop(next(iter(data["vary"])))
        elif kind == 2:
            data["ask"] = [NAMES[k] for k in rng.integers(len(NAMES), size=rng.integers(0, 3))]
        elif kind == 3:
            key, value = CONSTRAINTS[rng.integers(len(CONSTRAINTS))]
            if isinstance(data.get("constraints"), dict):
                data["constraints"][key] = value
        elif kind == 4:
            data[["vary", "ask", "constraints"][rng.integers(3)]] = [None, 1, "x", [], {}][rng.integers(5)]
        elif kind == 5:
            data.pop(["vary", "ask", "constraints", "expected"][rng.integers(4)], None)
        else:
            data["expected"] = {"p1.delta": [[0, 0], [0, 0]]}
    return data


def test_mutated_templates_are_drawn_or_refused_with_a_located_error(tmp_path):
    base = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    rng = np.random.default_rng(13)
    outcomes = {0: 0, 2: 0}
    for case in range(100):
        path = write(tmp_path, yaml.safe_dump(_mutated(rng, base), sort_keys=False), f"m{case}.yaml")
        out = tmp_path / f"out{case}"
        result = cli("exercise", path, "--seed", case, "-o", out)
        assert result.exit_code in (0, 2), (case, result.output, path.read_text())
        assert result.exception is None or isinstance(result.exception, SystemExit), (case, path.read_text())
        outcomes[result.exit_code] += 1
        if result.exit_code == 2:
            assert result.output.startswith("error: ") and "Traceback" not in result.output
            assert not out.exists()
        else:
            check = cli("check", out / "variant.yaml", "--expected", out / "answers.yaml")
            assert check.exit_code == 0, (case, check.output)
    assert outcomes[0] >= 10 and outcomes[2] >= 10, outcomes
