"""Grading for Gradescope: `check --format gradescope` (points, partial credit, carried
errors) and `bptrace autograder` (the zip, run against an /autograder-shaped tree)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from bptrace.cli import main
from conftest import ROOT
from test_check import kernel_gradient, upsampled

SEED001 = (ROOT / "scenarios/seed001.yaml").read_text()
P1 = "[[0.0364, 0.0686], [0.0467, -0.0681]]"                 # right (as written / truncated)
KERNEL = "[[0.044606, 0.094061], [0.011262, 0.068288]]"      # right, from those deltas
FLIPPED = "[[0.068288, 0.011262], [0.094061, 0.044606]]"     # the kernel-not-flipped mistake
ONE_OFF = "[[0.044606, 0.094061], [0.011262, 0.068999]]"     # 3 of 4 right
# Gradescope's results.json keys (autograder specification, "Output format")
TOP_KEYS = {"score", "execution_time", "output", "visibility", "stdout_visibility", "extra_data", "tests",
            "output_format", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "number", "output", "tags", "visibility", "extra_data",
             "name_format", "output_format"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def sheet(p1=P1, kernel=KERNEL, extra=""):
    return f"expected:\n  p1.delta: {p1}\n  c1.grad.kernel: {kernel}\n{extra}"


def gradescope(*args):
    result = CliRunner().invoke(main, ["check", "--format", "gradescope", *map(str, args)])
    return result, (json.loads(result.output) if result.exit_code in (0, 1) else None)


def assert_gradescope_shape(results):
    """What Gradescope accepts: its keys only, numbers where it wants numbers, a status of
    passed/failed, visibilities it knows, and the score the tests add up to."""
    assert set(results) <= TOP_KEYS
    assert isinstance(results["score"], (int, float)) and isinstance(results["output"], str)
    assert isinstance(results.get("execution_time", 0), int)
    assert results["visibility"] in VISIBILITY and results["stdout_visibility"] in VISIBILITY
    for test in results["tests"]:
        assert set(test) <= TEST_KEYS
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(test)
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITY
        assert 0 <= test["score"] <= test["max_score"]
        assert (test["status"] == "passed") == (test["score"] == test["max_score"])
    assert results["score"] == pytest.approx(sum(test["score"] for test in results["tests"]))


def scores(results) -> dict:
    return {test["name"]: (test["score"], test["max_score"]) for test in results["tests"]}


# --- check --format gradescope ------------------------------------------------------------

def test_each_answer_is_a_test_worth_one_point(tmp_path):
    result, results = gradescope(write(tmp_path, "hw.yaml", SEED001 + sheet(kernel=FLIPPED)))
    assert result.exit_code == 1          # as check: a wrong answer
    assert_gradescope_shape(results)
    assert scores(results) == {"p1.delta": (1, 1), "c1.grad.kernel": (0, 1)}
    assert results["score"] == 1
    kernel = results["tests"][1]
    assert kernel["status"] == "failed" and kernel["output"].startswith("0 of 4 numbers right")
    assert "c1.grad.kernel[0,0]: yours 0.068288, bptrace 0.044591799" in kernel["output"]
    # the student sees where the work went wrong and the likely mistake
    assert "first wrong step: c1.grad.kernel" in results["output"]
    assert "likely mistake: kernel-not-flipped" in results["output"]


def test_a_step_earns_the_share_of_its_numbers_that_are_right(tmp_path):
    text = SEED001 + sheet(kernel=ONE_OFF) + "points: {p1.delta: 2, c1.grad.kernel: 4}\n"
    result, results = gradescope(write(tmp_path, "hw.yaml", text))
    assert_gradescope_shape(results)
    assert scores(results) == {"p1.delta": (2, 2), "c1.grad.kernel": (3, 4)}
    assert results["score"] == 5 and results["tests"][1]["output"].startswith("3 of 4 numbers right")


def test_a_value_wrong_only_because_of_an_earlier_answer_earns_its_credit(tmp_path):
    # 0.0364 miscopied as 0.0370, the rest worked correctly from it (check: "follows")
    p1 = [[0.0370, 0.0686], [0.0467, -0.0681]]
    gradient = kernel_gradient(upsampled(p1))
    text = SEED001 + sheet(p1=p1, kernel=np.round(gradient, 6).tolist()) + "points: 4\n"
    result, results = gradescope(write(tmp_path, "hw.yaml", text))
    assert_gradescope_shape(results)
    assert scores(results) == {"p1.delta": (3, 4), "c1.grad.kernel": (4, 4)}
    assert "4 of 4 numbers right (4 follows from your earlier values" in results["tests"][1]["output"]


def test_listed_points_grade_exactly_those_answers_answered_or_not(tmp_path):
    text = SEED001 + sheet(kernel=FLIPPED) + "points: {p1.delta: 1, 'c1.grad.kernel[0,1]': 2, input.delta: 3}\n"
    result, results = gradescope(write(tmp_path, "hw.yaml", text))
    assert_gradescope_shape(results)
    assert scores(results) == {"p1.delta": (1, 1), "c1.grad.kernel[0,1]": (0, 2), "input.delta": (0, 3)}
    assert results["tests"][2]["output"] == "not answered (25 numbers asked)"


def test_points_on_the_command_line_replace_the_scenarios(tmp_path):
    path = write(tmp_path, "hw.yaml", SEED001 + sheet(kernel=ONE_OFF) + "points: 10\n")
    _, results = gradescope(path, "--points", "2")
    assert scores(results) == {"p1.delta": (2, 2), "c1.grad.kernel": (1.5, 2)}
    _, results = gradescope(path, "--points", "c1.grad.kernel=8")
    assert scores(results) == {"c1.grad.kernel": (6, 8)}


@pytest.mark.parametrize("args, message", [
    (["--points", "2", "--points", "p1.delta=1"], "give one number (every answer) or KEY=N pairs"),
    (["--points", "lots"], "'lots' is not a number of points"),
    (["--points", "-2"], "points must be a number of at least 0"),
    (["--points", "p1.delta=nan"], "points must be a number of at least 0"),
    (["--points", "p1.delta=inf"], "points must be a number of at least 0"),
    (["--points", "p1.delta=2", "--points", "p1.delta =3"], "--points gives p1.delta twice"),
])
def test_a_bad_points_option_is_refused(tmp_path, args, message):
    # a mistake on the command line writes no report (README "bptrace check")
    report = tmp_path / "results.json"
    result, _ = gradescope(write(tmp_path, "hw.yaml", SEED001 + sheet()), *args, "-o", report)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not report.exists()


@pytest.mark.parametrize("points, message", [
    ("{c9.delta: 1}", "'c9.delta' is not a value in this trace"),
    ("{p1.delta: -1}", "points must be a number of at least 0"),
    ("{p1.delta: 1, 'p1.delta[0,0]': 1}", "gives points for numbers p1.delta already does"),
    ("lots", "points must be a number of at least 0"),
])
def test_a_bad_points_key_is_located(tmp_path, points, message):
    result = CliRunner().invoke(main, ["run", str(write(tmp_path, "hw.yaml", SEED001 + f"points: {points}\n"))])
    assert result.exit_code == 2 and message in result.output
    assert "hw.yaml:" in result.output


def test_gradescope_grades_one_submission(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        write(tmp_path, name, "p1.delta: " + P1 + "\n")
    result, _ = gradescope(ROOT / "scenarios/seed001.yaml", "--expected", tmp_path)
    assert result.exit_code == 2 and "grades one submission; got 2" in result.output


# --- bptrace autograder -------------------------------------------------------------------

def build_zip(tmp_path, text, *args):
    scenario = write(tmp_path, "problem.yaml", text)
    result = CliRunner().invoke(main, ["autograder", str(scenario), "-o", str(tmp_path / "autograder.zip"), *args])
    assert result.exit_code == 0, result.output
    return tmp_path / "autograder.zip"


def autograder_tree(tmp_path, archive):
    """/autograder as Gradescope lays it out: the zip in source/, run_autograder copied up."""
    root = tmp_path / "autograder"
    for folder in ("source", "submission", "results"):
        (root / folder).mkdir(parents=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(root / "source")
    (root / "run_autograder").write_bytes((root / "source/run_autograder").read_bytes())
    return root


def run_autograder(root):
    """run_autograder with bptrace imported from the wheel in the zip, not from this checkout."""
    wheel = json.loads((root / "source/bptrace-autograder.json").read_text())["wheel"]
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHONPATH": str(root / "source" / wheel)}
    done = subprocess.run([sys.executable, str(root / "run_autograder")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"from {root / 'source' / wheel}" in done.stdout      # the wheel's bptrace did the grading
    return json.loads((root / "results/results.json").read_text())


def test_the_zip_holds_what_gradescope_runs_and_a_wheel_of_this_source(tmp_path):
    archive = build_zip(tmp_path, SEED001, "--points", "p1.delta=2", "--points", "c1.grad.kernel=4")
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        config = json.loads(zipped.read("bptrace-autograder.json"))
        setup = zipped.read("setup.sh").decode()
        modes = {info.filename: info.external_attr >> 16 for info in zipped.infolist()}
        wheel = zipped.read(config["wheel"])
    assert {"setup.sh", "run_autograder", "problem.yaml", "bptrace-autograder.json", config["wheel"]} == set(names)
    assert config["points"] == {"p1.delta": 2.0, "c1.grad.kernel": 4.0}
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    # setup.sh installs the very wheel that is in the zip
    assert f"pip install ./{config['wheel']}" in setup
    (tmp_path / "w.whl").write_bytes(wheel)
    with zipfile.ZipFile(tmp_path / "w.whl") as built:
        for path in (ROOT / "bptrace").rglob("*.py"):
            name = "bptrace/" + path.relative_to(ROOT / "bptrace").as_posix()
            assert built.read(name) == path.read_bytes(), name
        metadata = built.read("bptrace-0.1.0.dist-info/METADATA").decode()
    for requirement in ("numpy>=1.23", "click>=8.1", "rich>=13", "pyyaml>=6"):
        assert f"Requires-Dist: {requirement}" in metadata


def test_run_autograder_grades_a_submission(tmp_path):
    root = autograder_tree(tmp_path, build_zip(tmp_path, SEED001 + "points: {p1.delta: 2, c1.grad.kernel: 4}\n"))
    (root / "submission/answers").mkdir()
    (root / "submission/answers/mine.yaml").write_text(f"p1.delta: {P1}\nc1.grad.kernel: {ONE_OFF}\n")
    results = run_autograder(root)
    assert_gradescope_shape(results)
    assert scores(results) == {"p1.delta": (2, 2), "c1.grad.kernel": (3, 4)}
    assert results["score"] == 5


def test_a_submission_without_an_answer_file_scores_zero_and_says_why(tmp_path):
    root = autograder_tree(tmp_path, build_zip(tmp_path, SEED001 + "points: {p1.delta: 2, c1.grad.kernel: 4}\n"))
    (root / "submission/notes.txt").write_text("I did it on paper")
    results = run_autograder(root)
    assert_gradescope_shape(results)
    assert results["score"] == 0
    assert "no answer file in the submission: submit one .yaml, .yml, .json or .npz file" in results["output"]
    assert scores(results) == {"p1.delta": (0, 2), "c1.grad.kernel": (0, 4)}


def test_an_unreadable_or_doubled_submission_scores_zero_and_says_why(tmp_path):
    root = autograder_tree(tmp_path, build_zip(tmp_path, SEED001))
    (root / "submission/mine.yaml").write_text("p1.delta: [[0.0364, 0.0686], [0.0467]]\n")
    results = run_autograder(root)
    assert results["score"] == 0 and "could not be graded: mine.yaml:1:" in results["output"]
    (root / "submission/other.json").write_text("{}")
    results = run_autograder(root)
    assert results["score"] == 0 and "2 answer files in the submission (mine.yaml, other.json)" in results["output"]


def test_a_bad_scenario_writes_no_zip(tmp_path):
    scenario = write(tmp_path, "problem.yaml", SEED001 + "points: {c9.delta: 1}\n")
    result = CliRunner().invoke(main, ["autograder", str(scenario), "-o", str(tmp_path / "a.zip")])
    assert result.exit_code == 2 and "'c9.delta' is not a value in this trace" in result.output
    assert not (tmp_path / "a.zip").exists()


def test_a_zip_that_cannot_be_written_is_a_located_error_and_stdout_takes_it(tmp_path):
    scenario = write(tmp_path, "problem.yaml", SEED001)
    result = CliRunner().invoke(main, ["autograder", str(scenario), "-o", str(tmp_path / "no/such/folder/a.zip")])
    assert result.exit_code == 2 and "cannot write" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.zip")) and not list(tmp_path.glob(".*"))
    # the same writer as every other output: a stream is written into, not replaced
    result = CliRunner().invoke(main, ["autograder", str(scenario), "-o", "/dev/null"])
    assert result.exit_code == 0, result.output


def test_the_schema_takes_what_the_loader_takes_for_points():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml
    from bptrace.schema import schema
    validator = jsonschema.Draft7Validator(schema())
    base = yaml.safe_load(SEED001)
    for points in (2, 0.5, {"p1.delta": 2, "c1.grad.kernel[0,1]": 1}):
        assert not list(validator.iter_errors({**base, "points": points})), points
    for points in (-1, "lots", {}, {"p1.delta": -2}):
        assert list(validator.iter_errors({**base, "points": points})), points


# --- bptrace autograder from a roster folder (one variant per student) ---------------------

TEMPLATE = (ROOT / "templates/seed001_exercise.yaml").read_text()
# a class as Gradescope lists it: the roster's ids are what the instructor wrote, the
# metadata's users what Gradescope knows (email, sid, name)
STUDENTS = "id,name\nada@uni.edu,Ada Lovelace\nbob@uni.edu,Bob Byron\ncy@uni.edu,Cy Young\n"


def roster_folder(tmp_path, template=TEMPLATE):
    """`bptrace exercise TEMPLATE --roster students.csv -o hw3`, as the README's flow runs it."""
    write(tmp_path, "students.csv", STUDENTS)
    write(tmp_path, "template.yaml", template)
    result = CliRunner().invoke(main, ["exercise", str(tmp_path / "template.yaml"),
                                       "--roster", str(tmp_path / "students.csv"), "-o", str(tmp_path / "hw3")])
    assert result.exit_code == 0, result.output
    return tmp_path / "hw3"


def metadata(root, *users):
    """/autograder/submission_metadata.json as Gradescope writes it ("Submission Metadata")."""
    data = {"id": 123456, "created_at": "2026-11-30T01:00:00.000000-08:00", "submission_method": "upload",
            "assignment": {"id": 25828, "title": "hw3", "total_points": "6.0"},
            "users": [{"email": email, "id": 1000 + k, "name": name, **({"sid": sid} if sid else {})}
                      for k, (email, name, sid) in enumerate(users)],
            "previous_submissions": []}
    (root / "submission_metadata.json").write_text(json.dumps(data))


def submit(root, answers_path):
    for old in (root / "submission").iterdir():
        old.unlink()
    (root / "submission/answers.yaml").write_bytes(answers_path.read_bytes())
    return run_autograder(root)


def test_a_roster_zip_grades_each_student_against_their_own_variant(tmp_path):
    # the template's points reach every variant, so every student's maximum is 6
    hw3 = roster_folder(tmp_path, TEMPLATE + "points: {p1.delta: 2, c1.grad.kernel: 4}\n")
    result = CliRunner().invoke(main, ["autograder", str(hw3), "-o", str(tmp_path / "autograder.zip")])
    assert result.exit_code == 0, result.output
    assert "and 3 variants" in result.stderr
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zipped:
        names = set(zipped.namelist())
        config = json.loads(zipped.read("bptrace-autograder.json"))
    assert {"roster.csv", "variants/ada@uni.edu/variant.yaml", "variants/bob@uni.edu/variant.yaml",
            "variants/cy@uni.edu/variant.yaml"} <= names
    assert config["students"]["bob@uni.edu"] == "variants/bob@uni.edu/variant.yaml"
    root = autograder_tree(tmp_path, tmp_path / "autograder.zip")
    # Bob, as Gradescope names him (an email's case is not the roster's)
    metadata(root, ("Bob@Uni.edu", "Bob Byron", "20261002"))
    results = submit(root, hw3 / "bob@uni.edu/answers.yaml")
    assert_gradescope_shape(results)
    assert scores(results) == {"p1.delta": (2, 2), "c1.grad.kernel": (4, 4)} and results["score"] == 6
    # Bob handing in Ada's answers: her kernel gradient is not his
    results = submit(root, hw3 / "ada@uni.edu/answers.yaml")
    assert_gradescope_shape(results)
    assert results["score"] < 6 and scores(results)["c1.grad.kernel"][0] < 4
    # and Ada's answers are Ada's full score
    metadata(root, ("ada@uni.edu", "Ada Lovelace", None))
    assert submit(root, hw3 / "ada@uni.edu/answers.yaml")["score"] == 6


def test_a_student_not_on_the_roster_scores_zero_and_is_told_which_ids_were_tried(tmp_path):
    hw3 = roster_folder(tmp_path)
    result = CliRunner().invoke(main, ["autograder", str(hw3), "-o", str(tmp_path / "autograder.zip")])
    assert result.exit_code == 0, result.output
    root = autograder_tree(tmp_path, tmp_path / "autograder.zip")
    metadata(root, ("zed@uni.edu", "Zed Zee", "777"))
    results = submit(root, hw3 / "bob@uni.edu/answers.yaml")
    assert_gradescope_shape(results)
    assert results["score"] == 0
    assert ("no variant for this submission: none of its ids (email 'zed@uni.edu', sid '777', name 'Zed Zee') "
            "is on the roster of 3 students") in results["output"]
    # every asked step is listed at 0: without `points:` each is worth 1, for every student
    assert scores(results) == {"p1.delta": (0, 1), "c1.grad.kernel": (0, 1)}
    assert "variant" not in results["output"].splitlines()[0]     # no other student's variant named
    # no metadata at all (run by hand): 0, and why
    (root / "submission_metadata.json").unlink()
    results = run_autograder(root)
    assert results["score"] == 0 and "submission_metadata.json cannot be read" in results["output"]


def test_a_templates_points_for_each_answer_are_given_to_every_asked_step(tmp_path):
    # `points: 2` would let a sheet with one answer score 2 of 2; listed, every maximum is 4
    hw3 = roster_folder(tmp_path, TEMPLATE + "points: 2\n")
    for given in (hw3, hw3 / "roster.csv"):       # the folder, or its roster.csv
        result = CliRunner().invoke(main, ["autograder", str(given), "-o", str(tmp_path / "a.zip")])
        assert result.exit_code == 0, result.output
        with zipfile.ZipFile(tmp_path / "a.zip") as zipped:
            config = json.loads(zipped.read("bptrace-autograder.json"))
        assert config["points"] == {"p1.delta": 2.0, "c1.grad.kernel": 2.0} and len(config["students"]) == 3
    result = CliRunner().invoke(main, ["autograder", str(hw3), "--points", "c1.grad.kernel=5", "-o",
                                       str(tmp_path / "a.zip")])
    with zipfile.ZipFile(tmp_path / "a.zip") as zipped:
        assert json.loads(zipped.read("bptrace-autograder.json"))["points"] == {"c1.grad.kernel": 5.0}


def test_the_submitter_is_found_by_email_then_sid_then_name():
    from bptrace.autograder import find_student

    roster = ["ada@uni.edu", "20261002", "Cy Young"]

    def user(email, name, sid=None):
        return {"email": email, "id": 1, "name": name, **({"sid": sid} if sid is not None else {})}

    assert find_student({"users": [user("ADA@uni.edu", "Cy Young", "20261002")]}, roster)[0] == "ada@uni.edu"
    assert find_student({"users": [user("b@x.org", "Cy Young", "20261002")]}, roster)[0] == "20261002"
    assert find_student({"users": [user("c@x.org", " cy young ")]}, roster)[0] == "Cy Young"
    # a group: the first member on the roster
    group = {"users": [user("z@x.org", "Zed"), user("y@x.org", "Yan", "20261002")]}
    assert find_student(group, roster) == ("20261002", ["email 'z@x.org'", "name 'Zed'", "email 'y@x.org'",
                                                        "sid '20261002'"])
    assert find_student({"users": []}, roster) == (None, [])
    assert find_student({}, roster) == (None, [])


def test_a_folder_without_a_roster_is_refused(tmp_path):
    (tmp_path / "hw").mkdir()
    result = CliRunner().invoke(main, ["autograder", str(tmp_path / "hw"), "-o", str(tmp_path / "a.zip")])
    assert result.exit_code == 2 and "is a folder without roster.csv" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "a.zip").exists()


def test_a_roster_naming_a_missing_variant_writes_no_zip(tmp_path):
    hw3 = roster_folder(tmp_path)
    (hw3 / "cy@uni.edu/variant.yaml").unlink()
    result = CliRunner().invoke(main, ["autograder", str(hw3), "-o", str(tmp_path / "a.zip")])
    assert result.exit_code == 2 and "roster.csv:4" in result.output
    assert "no variant file for student 'cy@uni.edu' (cy@uni.edu/variant.yaml)" in result.output
    assert not (tmp_path / "a.zip").exists()


def test_an_as_written_problem_warns_that_one_decimal_earns_full_credit(tmp_path):
    # what the warning says is so: 0.0 for 0.0364, as written, passes
    _, results = gradescope(write(tmp_path, "hw.yaml", SEED001 + "expected:\n  p1.delta: [[0.0, 0.1], [0.0, -0.1]]\n"))
    assert results["score"] == 1 and results["tests"][0]["status"] == "passed"
    # ... and a scenario's `rounding:` does not change that; `tolerance:` does
    rounded = SEED001 + "rounding: {decimals: 4}\n"
    _, results = gradescope(write(tmp_path, "r.yaml", rounded + "expected:\n  p1.delta: [[0.0, 0.1], [0.0, -0.1]]\n"))
    assert results["score"] == 1
    for text, warned in ((SEED001, True), (rounded, True), (SEED001 + "tolerance: {abs: 0.00005}\n", False)):
        scenario = write(tmp_path, "problem.yaml", text)
        result = CliRunner().invoke(main, ["autograder", str(scenario), "-o", str(tmp_path / "a.zip")])
        assert result.exit_code == 0, result.output
        warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warning) == warned, result.stderr
        if warned:
            assert "grades answers as written" in warning[0] and "(0.0 for 0.0364)" in warning[0]
            assert "`tolerance: {abs: 0.00005}`" in warning[0]
    _, results = gradescope(write(tmp_path, "t.yaml", SEED001 + "tolerance: {abs: 0.00005}\n"
                                  "expected:\n  p1.delta: [[0.0, 0.1], [0.0, -0.1]]\n"))
    assert results["score"] == 0
