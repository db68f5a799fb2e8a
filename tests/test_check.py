"""`bptrace check`: verdicts as written, carried errors, answer files, the report and the
command line (exit codes, JSON, many sheets in one call)."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from bptrace.check import Tolerance, Written, check_files, match
from bptrace.cli import main
from bptrace.render import check_text
from conftest import ROOT

SEED001 = (ROOT / "scenarios/seed001.yaml").read_text()
SEED_INPUT = np.array([[0.51, 0.90, 0.88, 0.84, 0.05],
                       [0.40, 0.62, 0.22, 0.59, 0.10],
                       [0.11, 0.20, 0.74, 0.33, 0.14],
                       [0.47, 0.01, 0.85, 0.70, 0.09],
                       [0.76, 0.19, 0.72, 0.17, 0.57]])
# seed 001's own answer sheet: the deltas cut after 4 decimals, and the kernel gradient the
# answer's code printed from them
OWN_SHEET = """
expected:
  p1.delta: [[0.0364, 0.0686], [0.0467, -0.0681]]
  c1.grad.kernel: [[0.044606, 0.094061], [0.011262, 0.068288]]
"""


def invoke(*args):
    return CliRunner().invoke(main, ["check", *map(str, args)])


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def plain(report, width=100) -> str:
    buffer = io.StringIO()
    Console(width=width, file=buffer, color_system=None).print(check_text.render(report))
    return buffer.getvalue()


def upsampled(p1_delta) -> np.ndarray:
    """seed 001's max-pool routing, from its c1.out (maxima at [1,1], [0,2], [2,1], [3,3])."""
    d = np.zeros((4, 4))
    for (i, j), (h, w) in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [(1, 1), (0, 2), (2, 1), (3, 3)]):
        d[h, w] = p1_delta[i][j]
    return d


def kernel_gradient(c1_delta) -> np.ndarray:
    """grad[u,v] = Σ_ij δ[i,j] · x[i+u, j+v] (seed 001's answer), in numpy."""
    return np.array([[np.sum(c1_delta * SEED_INPUT[u:u + 4, v:v + 4]) for v in range(2)] for u in range(2)])


# --- numbers as written -------------------------------------------------------------------

@pytest.mark.parametrize("text, decimals", [("0.0364", 4), ("0.0360", 4), ("-0.0681", 4), ("1.5e-3", 4),
                                            ("1e-05", 5), ("2", 0), ("0", 0), (".5", 1), ("1_000.25", 2)])
def test_decimals_are_read_from_the_text(text, decimals):
    assert Written(float(text.replace("_", "")), text).decimals == decimals


@pytest.mark.parametrize("text, digits", [("0.0364", 3), ("0.0360", 3), ("0", 1), ("-12.5", 3), ("1.50e-3", 3)])
def test_significant_digits_are_read_from_the_text(text, digits):
    assert Written(float(text), text).digits == digits


def test_a_number_is_right_as_written_rounded_or_truncated():
    as_written = Tolerance()
    assert match(Written(0.0364, "0.0364"), 0.0364182, as_written) == "as written (4 decimals)"
    assert match(Written(0.0468, "0.0468"), 0.04675125, as_written) == "as written (4 decimals)"
    assert match(Written(0.0467, "0.0467"), 0.04675125, as_written) == "matches when truncated (4 decimals)"
    assert match(Written(-0.0681, "-0.0681"), -0.06818625, as_written) == "matches when truncated (4 decimals)"
    assert match(Written(0.0469, "0.0469"), 0.04675125, as_written) is None
    # the decimals written count, not the float: 0.0360 claims four of them
    assert match(Written(0.036, "0.0360"), 0.0364182, as_written) is None
    assert match(Written(0.036, "0.036"), 0.0364182, as_written) == "as written (3 decimals)"


def test_rounding_half_up_sees_the_decimal_a_person_sees():
    # 0.04675 is 0.046749999999999997 as a float; by hand it rounds up
    assert match(Written(0.0468, "0.0468"), 0.1 * 0.4675, Tolerance()) == "as written (4 decimals)"


def test_a_whole_number_is_exact():
    assert match(Written(0.0, "0"), 0.0, Tolerance()) == "exact"
    assert match(Written(0.0, "0"), 0.3, Tolerance()) is None
    assert match(Written(1.0, "1"), 0.9999, Tolerance()) is None


def test_float_noise_is_the_same_number():
    # within the bound on bptrace's own float noise (a few epsilons of a sum near 0.0446)
    noise = 4 * 2.0 ** -52 * 0.0446
    assert match(Written(0.044606, "0.044606"), 0.04460600000000001, Tolerance(), noise) == "exact"
    # a number with no noise (as written, rounded, given) is exact only as the same float
    assert match(Written(0.044606, "0.044606"), 0.04460600000000001, Tolerance()) == "as written (6 decimals)"


def test_an_explicit_tolerance_replaces_as_written():
    assert match(Written(0.04, "0.04"), 0.0364, Tolerance(0.005, 0.0)) == "within tolerance"
    assert match(Written(0.04, "0.04"), 0.0364, Tolerance(0.001, 0.0)) is None
    assert match(Written(0.0364, "0.0364"), 0.0364182, Tolerance(0.0, 1e-4)) is None
    assert match(Written(0.0364, "0.0364"), 0.0364182, Tolerance(0.0, 1e-3)) == "within tolerance"


# --- seed 001's own sheet -----------------------------------------------------------------

def test_seed001s_own_sheet_passes_as_written(tmp_path):
    result = invoke("--width", 140, write(tmp_path, "sheet.yaml", SEED001 + OWN_SHEET))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "8 passed, 0 failed"
    assert "matches when truncated (4 decimals)" in result.output
    assert "follows from your earlier value" in result.output


def test_one_changed_digit_fails_exactly_one_number(tmp_path):
    result = invoke("--width", 140, write(tmp_path, "sheet.yaml", SEED001 + OWN_SHEET.replace("0.094061", "0.094071")))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "7 passed, 1 failed"
    assert "first wrong step: c1.grad.kernel" in result.output
    assert "bptrace explain " in result.output and "'c1.grad.kernel[0,1]'" in result.output
    assert "no known mistake explains this" in result.output


def test_the_shipped_rounded_seed001_checks_clean():
    result = invoke(ROOT / "scenarios/seed001_rounded.yaml")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].endswith(" passed, 0 failed")


def test_a_slip_carried_forward_is_counted_once(tmp_path):
    p1 = [[0.0370, 0.0686], [0.0467, -0.0681]]          # 0.0364 miscopied as 0.0370
    gradient = kernel_gradient(upsampled(p1))           # the rest worked from it, correctly
    sheet = (f"expected:\n  p1.delta: {p1}\n  c1.delta: {upsampled(p1).tolist()}\n"
             f"  c1.grad.kernel: {np.round(gradient, 6).tolist()}\n")
    result = invoke("--format", "json", write(tmp_path, "sheet.yaml", SEED001 + sheet))
    assert result.exit_code == 1
    report = json.loads(result.output)["files"][0]
    verdicts = {a["key"]: a["verdict"] for a in report["answers"]}
    assert verdicts["p1.delta[0,0]"] == "wrong"
    assert verdicts["c1.delta[1,1]"] == "follows"
    assert all(verdicts[f"c1.grad.kernel[{u},{v}]"] == "follows" for u in range(2) for v in range(2))
    assert (report["passed"], report["failed"]) == (23, 1)
    assert report["first_wrong"]["key"] == "p1.delta[0,0]"


# --- what a sheet may hold ----------------------------------------------------------------

def test_single_elements_in_the_scenarios_index_base(tmp_path):
    text = SEED001.replace("upstream:", "conventions: {index_base: 1}\nupstream:")
    sheet = "expected:\n  c1.grad.kernel[1,2]: 0.094119\n  input.delta[5,5]: -0.040912\n"
    result = invoke("--format", "json", write(tmp_path, "sheet.yaml", text + sheet))
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)["files"][0]["answers"]
    assert [(a["key"], a["index"]) for a in answers] == [("c1.grad.kernel[1,2]", [1, 2]),
                                                         ("input.delta[5,5]", [5, 5])]


def test_length_one_axes_may_be_written_or_left_out(tmp_path):
    sheet = "expected:\n  p1.delta: [[[[0.0364, 0.0686], [0.0468, -0.0682]]]]\n  c1.grad.bias: [0.083611]\n"
    result = invoke(write(tmp_path, "sheet.yaml", SEED001 + sheet))
    assert result.exit_code == 0, result.output


def test_a_number_answered_twice_is_an_input_error(tmp_path):
    answers = write(tmp_path, "answers.yaml", "p1.delta: [[0.0364, 0.0686], [0.0468, -0.0682]]\n"
                                              "p1.delta[0,1]: 0.0686\n")
    result = invoke(ROOT / "scenarios/seed001.yaml", "--expected", answers)
    assert result.exit_code == 2
    assert "answers.yaml:2" in result.output and "already answers" in result.output


def test_an_unknown_name_in_an_answer_file_is_located(tmp_path):
    answers = write(tmp_path, "answers.yaml", "c1.grad.kernal: [[0, 0], [0, 0]]\n")
    result = invoke(ROOT / "scenarios/seed001.yaml", "--expected", answers)
    assert result.exit_code == 2
    assert "answers.yaml:1" in result.output and "c1.grad.kernel" in result.output


def test_nothing_to_check_is_an_input_error():
    result = invoke(ROOT / "scenarios/seed001.yaml")
    assert result.exit_code == 2
    assert "nothing to check" in result.output


# --- tolerance and rounding ---------------------------------------------------------------

ROUGH = "expected:\n  p1.delta: [[0.037, 0.068], [0.047, -0.068]]\n"   # 3 decimals, the last one off


def test_the_tolerance_key_and_options_override_as_written(tmp_path):
    rough = write(tmp_path, "rough.yaml", SEED001 + ROUGH.replace("0.037", "0.0375"))
    assert invoke(rough).exit_code == 1
    assert invoke(rough, "--tolerance", "0.002").exit_code == 0
    assert invoke(rough, "--rtol", "0.05").exit_code == 0
    assert invoke(rough, "--tolerance", "0.0001").exit_code == 1
    keyed = write(tmp_path, "keyed.yaml", SEED001 + ROUGH.replace("0.037", "0.0375") + "tolerance: {abs: 0.002}\n")
    assert invoke(keyed).exit_code == 0
    assert invoke(keyed, "--tolerance", "0.0001").exit_code == 1      # the command line wins


@pytest.mark.parametrize("value, message", [("-1", "cannot be negative"), ("{abs: x}", "expected a number"),
                                            ("{absolute: 1}", "unknown key 'absolute'"), ("loose", "tolerance must be")])
def test_a_bad_tolerance_key_is_located(tmp_path, value, message):
    path = write(tmp_path, "bad.yaml", SEED001 + ROUGH + f"tolerance: {value}\n")
    result = invoke(path)
    assert result.exit_code == 2
    assert message in result.output and "bad.yaml:" in result.output


def test_round_applies_rounding_to_every_computed_value(tmp_path):
    path = write(tmp_path, "sheet.yaml", SEED001 + OWN_SHEET)
    result = invoke("--format", "json", "--round", "3", "--mode", "truncate", path)
    report = json.loads(result.output)["files"][0]
    assert report["rounding"] == "3 decimals, truncate, applied to all"
    values = {a["key"]: a["bptrace"] for a in report["answers"]}
    assert values["p1.delta[0,0]"] == 0.036 and values["p1.delta[1,1]"] == -0.068
    assert invoke("--mode", "truncate", path).exit_code == 2


# --- answer files -------------------------------------------------------------------------

def test_a_run_export_checks_clean_against_itself(tmp_path):
    for name in ("seed001.yaml", "seed001_rounded.yaml"):
        scenario = ROOT / "scenarios" / name
        export = tmp_path / f"{name}.json"
        assert CliRunner().invoke(main, ["run", str(scenario), "--format", "json", "-o", str(export)]).exit_code == 0
        result = invoke("--format", "json", scenario, "--expected", export)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["totals"]["failed"] == 0 and report["totals"]["passed"] > 50


def answer_rows(output: str) -> dict:
    """The text report's table: label → (yours, bptrace) as shown."""
    lines = output.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("───")) + 1
    rows = {}
    for line in lines[start:]:
        cells = line.split()
        if len(cells) < 5 or cells[4] not in ("✓", "✗"):
            break
        rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_a_run_export_shows_its_numbers_as_bptrace_does(tmp_path):
    # an export holds floats with their noise (0.27459999999999996); no person wrote those
    # digits, so they are shown as bptrace shows its own numbers
    scenario, export = ROOT / "scenarios/seed001.yaml", tmp_path / "export.json"
    assert CliRunner().invoke(main, ["run", str(scenario), "--format", "json", "-o", str(export)]).exit_code == 0
    assert "0.27459999999999996" in export.read_text()
    result = invoke("--width", 140, scenario, "--expected", export)
    assert result.exit_code == 0, result.output
    rows = answer_rows(result.output)
    assert len(rows) > 50
    assert [label for label, (yours, bptrace) in rows.items() if yours != bptrace] == []
    assert "0.27459999999999996" not in result.output


def test_a_zero_is_shown_without_a_sign(tmp_path):
    written = write(tmp_path, "answers.yaml", "c1.delta[0,0]: -0.0\nc1.delta[0,1]: -0\n")
    np.savez(tmp_path / "answers.npz", **{"c1.delta[0,0]": np.float64(-0.0)})
    for answers, shown in ((written, "0.0"), (tmp_path / "answers.npz", "0")):
        result = invoke(ROOT / "scenarios/seed001.yaml", "--expected", answers)
        assert result.exit_code == 0, result.output
        rows = answer_rows(result.output)
        assert rows["c1.delta[0,0]"] == (shown, "0")
        assert "−0" not in result.output.replace("−0.", "")


def test_a_json_answer_file_with_exponents(tmp_path):
    answers = write(tmp_path, "answers.json", json.dumps({"c1.grad.kernel[1,0]": 0.01125765,
                                                          "input.delta": None}).replace(
        '"input.delta": null', '"c1.delta[0,0]": 0e-05'))
    result = invoke(ROOT / "scenarios/seed001.yaml", "--expected", answers)
    assert result.exit_code == 0, result.output


def test_npz_answers_at_their_arrays_precision(torch, tmp_path):
    grads = {"c1.grad.kernel": torch.tensor([[0.0445918, 0.09411869], [0.01125765, 0.06831239]],
                                            dtype=torch.float32).reshape(1, 1, 2, 2).numpy(),
             "c1.grad.bias": np.array([0.0836112]), "input.delta[0,2]": np.float64(-0.00892164)}
    np.savez(tmp_path / "grads.npz", **grads)
    assert invoke(ROOT / "scenarios/seed001.yaml", "--expected", tmp_path / "grads.npz").exit_code == 0
    grads["c1.grad.kernel"] = grads["c1.grad.kernel"] * 1.001
    np.savez(tmp_path / "wrong.npz", **grads)
    result = invoke(ROOT / "scenarios/seed001.yaml", "--expected", tmp_path / "wrong.npz")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "2 passed, 4 failed"


def test_an_unreadable_npz_is_an_input_error(tmp_path):
    bad = write(tmp_path, "bad.npz", "not a zip")
    result = invoke(ROOT / "scenarios/seed001.yaml", "--expected", bad)
    assert result.exit_code == 2 and "bad.npz" in result.output


def test_expected_goes_with_one_scenario(tmp_path):
    answers = write(tmp_path, "a.yaml", "p1.delta[0,0]: 0.0364\n")
    result = invoke(ROOT / "scenarios/seed001.yaml", ROOT / "scenarios/seed001.yaml", "--expected", answers)
    assert result.exit_code == 2 and "exactly one SCENARIO" in result.output


# --- many sheets, JSON --------------------------------------------------------------------

def test_json_report_shape(tmp_path):
    sheet = OWN_SHEET.replace("[[0.044606, 0.094061], [0.011262, 0.068288]]",
                              "[[0.068288, 0.011262], [0.094061, 0.044606]]")
    result = invoke("--format", "json", write(tmp_path, "sheet.yaml", SEED001 + sheet))
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert set(report) == {"bptrace", "files", "totals"}
    assert report["totals"] == {"files": 1, "all_right": 0, "with_wrong_answers": 1, "broken": 0,
                                "passed": 4, "failed": 4}
    (sheet_report,) = report["files"]
    assert set(sheet_report) == {"file", "scenario", "title", "error", "tolerance", "rounding", "answers",
                                 "first_wrong", "diagnosis", "unexplained", "passed", "failed"}
    answer = sheet_report["answers"][4]
    assert answer == {"name": "c1.grad.kernel", "index": [0, 0], "key": "c1.grad.kernel[0,0]",
                      "yours": 0.068288, "written": "0.068288", "bptrace": answer["bptrace"],
                      "from_your_values": answer["from_your_values"], "difference": answer["difference"],
                      "verdict": "wrong", "how": "wrong"}
    assert answer["bptrace"] == pytest.approx(0.0445918, abs=1e-7)
    assert answer["from_your_values"] == pytest.approx(0.044606, abs=1e-12)
    assert sheet_report["first_wrong"]["explain"].endswith("'c1.grad.kernel[0,0]'")
    (diagnosis,) = sheet_report["diagnosis"]
    assert diagnosis["id"] == "kernel-not-flipped" and len(diagnosis["explains"]) == 4
    assert set(diagnosis) == {"id", "explains", "message", "layers"}
    assert sheet_report["tolerance"] == "as_written"


def test_a_broken_file_among_good_ones_is_reported_and_the_rest_checked(tmp_path):
    good = write(tmp_path, "good.yaml", SEED001 + OWN_SHEET)
    wrong = write(tmp_path, "wrong.yaml", SEED001 + OWN_SHEET.replace("0.0686", "0.0696", 1))
    broken = write(tmp_path, "broken.yaml", SEED001 + OWN_SHEET + "  c1.grad.bias: [0.1, \n")
    result = invoke("--format", "json", good, broken, wrong)
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert [f["error"] is None for f in report["files"]] == [True, False, True]
    assert "broken.yaml:" in report["files"][1]["error"]
    assert report["totals"]["broken"] == 1 and report["totals"]["all_right"] == 1
    text = invoke(good, broken, wrong)
    assert text.exit_code == 2
    lines = text.stdout.splitlines()
    assert lines[-2] == "3 files: 1 all right, 1 with wrong answers, 1 could not be read"
    assert lines[-1].endswith("failed")
    assert "error: " in text.stderr and "broken.yaml" in text.stderr


def test_two_hundred_sheets_in_one_call(tmp_path):
    directory = tmp_path / "answers"
    directory.mkdir()
    p1 = [[0.0364, 0.0686], [0.0467, -0.0681]]
    kernel = [[0.044606, 0.094061], [0.011262, 0.068288]]
    for number in range(200):
        p, k = [row[:] for row in p1], [row[:] for row in kernel]
        if number % 4 == 1:
            k[number % 2][(number // 2) % 2] += 0.01          # one wrong number
        elif number % 4 == 2:
            k = [row[::-1] for row in k[::-1]]                # kernel gradient turned by 180°
        elif number % 4 == 3:
            p[1][1] = -0.0691                                 # one slipped delta, carried on
            k = np.round(kernel_gradient(upsampled(p)), 6).tolist()
        (directory / f"s{number:03d}.yaml").write_text(f"p1.delta: {p}\nc1.grad.kernel: {k}\n")
    start = time.perf_counter()
    result = invoke("--format", "json", ROOT / "scenarios/seed001.yaml", "--expected", directory)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["totals"] == {"files": 200, "all_right": 50, "with_wrong_answers": 150, "broken": 0,
                                "passed": 200 * 8 - 50 * (1 + 4 + 1), "failed": 50 * (1 + 4 + 1)}
    by_kind = [report["files"][n] for n in range(4)]
    assert by_kind[0]["failed"] == 0 and by_kind[0]["diagnosis"] == []
    assert by_kind[1]["first_wrong"]["key"] == "c1.grad.kernel[1,0]" and by_kind[1]["diagnosis"] == []
    assert [d["id"] for d in by_kind[2]["diagnosis"]] == ["kernel-not-flipped"]
    assert by_kind[3]["first_wrong"]["key"] == "p1.delta[1,1]"
    assert elapsed < 60


# --- the text report ----------------------------------------------------------------------

def test_text_report_of_a_sheet(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "homework.yaml", SEED001 + OWN_SHEET.replace(
        "[[0.044606, 0.094061], [0.011262, 0.068288]]", "[[0.068288, 0.011262], [0.094061, 0.044606]]"))
    text = plain(check_files(["homework.yaml"]))
    golden("check_homework.txt", text)
    assert text.splitlines()[-1] == "4 passed, 4 failed"


def test_text_report_of_a_passing_sheet(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "own.yaml", SEED001 + OWN_SHEET)
    text = plain(check_files(["own.yaml"]))
    golden("check_own_sheet.txt", text)
    assert not [line for line in text.splitlines() if line.endswith(" ")]


def test_text_report_of_many_sheets(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "good.yaml", SEED001 + OWN_SHEET)
    write(tmp_path, "turned.yaml", SEED001 + OWN_SHEET.replace(
        "[[0.044606, 0.094061], [0.011262, 0.068288]]", "[[0.068288, 0.011262], [0.094061, 0.044606]]"))
    text = plain(check_files(["good.yaml", "turned.yaml", "missing.yaml"]))
    golden("check_many.txt", text)
    assert not [line for line in text.splitlines() if line.endswith(" ")]


def test_a_sheet_passed_as_a_scenario_is_recognised(tmp_path):
    sheet = tmp_path / "alice.yaml"
    sheet.write_text("c1.grad.kernel: [[0.044592, 0.094119], [0.011258, 0.068312]]\n")
    result = CliRunner().invoke(main, ["check", str(sheet)])
    assert result.exit_code == 2
    assert "this is an answer sheet, not a scenario" in result.output
    assert f"bptrace check SCENARIO --expected {sheet}" in result.output


def test_a_broken_scenario_is_not_taken_for_a_sheet(tmp_path):
    broken = tmp_path / "p.yaml"
    broken.write_text("input: [[1, 2], [3, 4]]\nlayers: []\n")
    result = CliRunner().invoke(main, ["check", str(broken)])
    assert result.exit_code == 2 and "answer sheet" not in result.output


def test_help_examples_use_answers_only_for_answer_sheets():
    text = CliRunner().invoke(main, ["check", "--help"]).output
    lines = [line for line in text.splitlines() if "bptrace check" in line and "answers/" in line]
    assert lines and all("--expected answers/" in line for line in lines)


def test_jobs_check_sheets_in_processes_with_the_same_report(tmp_path):
    """--jobs 2 gives the report of one process, sheet for sheet, in the same order."""
    for k, number in enumerate(["0.044592", "0.1", "0.044592", "oops", "0.2"]):
        (tmp_path / f"s{k}.yaml").write_text(f"c1.grad.kernel[0,0]: {number}\n")
    scenario = str(ROOT / "scenarios/seed001.yaml")
    one, two = tmp_path.parent / f"{tmp_path.name}-one.json", tmp_path.parent / f"{tmp_path.name}-two.json"
    first = CliRunner().invoke(main, ["check", scenario, "--expected", str(tmp_path), "--format", "json",
                                      "-o", str(one)])
    second = CliRunner().invoke(main, ["check", scenario, "--expected", str(tmp_path), "--format", "json",
                                       "--jobs", "2", "-o", str(two)])
    assert first.exit_code == second.exit_code == 2
    assert json.loads(one.read_text()) == json.loads(two.read_text())
    assert json.loads(two.read_text())["totals"]["broken"] == 1


PID_FOLDER = []


def _chunk_noting_its_process(paths):
    """check's `_check_inherited`, writing down the process that ran it (module level, so
    that the pool can send it to its workers)."""
    import os
    (PID_FOLDER[0] / f"pid{os.getpid()}-{len(list(PID_FOLDER[0].glob('pid*')))}").write_text(" ".join(paths))
    return _ORIGINAL_CHUNK[0](paths)


_ORIGINAL_CHUNK = []


def test_jobs_share_the_sheets_among_processes_and_the_clean_run_is_made_once(tmp_path, monkeypatch):
    import os
    from bptrace.check import checker
    PID_FOLDER[:] = [tmp_path]
    _ORIGINAL_CHUNK[:] = [checker._check_inherited]
    monkeypatch.setattr(checker, "_check_inherited", _chunk_noting_its_process)      # forked workers see it
    made = tmp_path / "models"
    made.mkdir()
    original_init = checker.Model.__init__

    def noting_init(self, scenario):
        (made / f"{os.getpid()}-{len(list(made.iterdir()))}").touch()
        original_init(self, scenario)

    monkeypatch.setattr(checker.Model, "__init__", noting_init)
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    for k in range(4):
        (sheets / f"s{k}.yaml").write_text("c1.grad.kernel[0,0]: 0.044592\n")
    report = checker.check_files([ROOT / "scenarios/seed001.yaml"], [sheets], jobs=2)
    assert [f.file for f in report.files] == [str(sheets / f"s{k}.yaml") for k in range(4)]
    assert all(not f.error and f.passed == 1 for f in report.files)
    chunks = list(tmp_path.glob("pid*"))         # every sheet checked in a worker, none in this process
    assert sorted(" ".join(c.read_text() for c in chunks).split()) == [str(sheets / f"s{k}.yaml") for k in range(4)]
    assert str(os.getpid()) not in {c.name[3:].split("-")[0] for c in chunks}
    # the problem's clean run: once per call, here, inherited by the workers
    assert [m.name.split("-")[0] for m in made.iterdir()] == [str(os.getpid())]


def test_many_sheets_never_cut_a_message_on_a_narrow_console(tmp_path, monkeypatch):
    # the verdict column once kept a minimum width the console did not have: rich wrapped the
    # message at that width and then cropped every line ("while pars", "the nod")
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "good.yaml", SEED001 + OWN_SHEET)
    write(tmp_path, "a_long_name_for_a_broken_sheet.yaml", SEED001 + OWN_SHEET + "  c1.grad.bias: [0.1, \n")
    report = check_files(["good.yaml", "a_long_name_for_a_broken_sheet.yaml"])
    error = report.files[1].error
    for width in (60, 80, 100):
        shown = iter("".join(plain(report, width).split()))
        assert all(char in shown for char in "".join(error.split())), width


@pytest.mark.parametrize("values, answers", [
    ("[3e-13, 2e-13]", "{h.out: 0}"),                  # 0 for 5e-13, 'exact'
    ("[3e-13, 2e-13]", "{h.out: 1e-13}"),              # 1e-13 for 5e-13, 'exact'
    ("[0.5, 0.25]", "{h.out: 0.75000000001}"),         # a wrong 11th decimal, 'exact'
    ("[0, 0]", "{h.out: 5e-13}"),                      # 5e-13 for an exact 0, 'exact'
])
def test_a_wrong_answer_is_never_exact_by_a_global_floor(tmp_path, values, answers):
    path = write(tmp_path, "tiny.yaml", f"input: {values}\nlayers:\n  - {{type: dense, name: h, weights: [[1, 1]]}}\n"
                                        f"loss: {{type: half_sse, target: [0]}}\nexpected: {answers}\n")
    result = invoke("--format", "json", path)
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["files"][0]["answers"][0]["verdict"] == "wrong"


@pytest.mark.parametrize("values, answer", [
    ("[0.1, 0.2]", "0.3"),                              # 0.30000000000000004: float noise, not a difference
    ("[0.52, -1.0, -0.11, 0.44]", "-0.1499999999999999"),   # the sum in the other order
])
def test_float_noise_of_the_sum_is_exact(tmp_path, values, answer):
    # the number written, or a float64 result of the same sum added in another order,
    # is within bptrace's own float-noise bound of this element
    weights = ", ".join("1" for _ in values.split(","))
    path = write(tmp_path, "tiny.yaml", f"input: {values}\nlayers:\n  - {{type: dense, name: h, weights: [[{weights}]]}}\n"
                                        f"loss: {{type: half_sse, target: [0]}}\nexpected: {{h.out: {answer}}}\n")
    result = invoke("--format", "json", path)
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["files"][0]["answers"][0]
    assert (row["how"], row["difference"]) == ("exact", 0.0)
    assert row["bptrace"] != float(answer) or answer == "0.3"


def test_pytorch_float64_gradients_are_exact(torch):
    """Every gradient autograd computes in float64, written as Python floats (their shortest
    text, 16-17 digits, which no float32 prints), is exact: float64 sums in another order
    differ from bptrace's by less than each element's noise bound."""
    import bptrace
    from torch import nn

    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 3)).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.25]], dtype=torch.float64)
    trace = bptrace.run(bptrace.from_torch(net, x, target, loss=nn.MSELoss()))
    nn.MSELoss()(net(x), target).backward()
    grads = {"conv1.grad.kernel": net[0].weight.grad, "conv1.grad.bias": net[0].bias.grad,
             "dense1.grad.weights": net[4].weight.grad, "dense1.grad.bias": net[4].bias.grad}
    answers = {name: grad.reshape(trace[name].values.shape).tolist() for name, grad in grads.items()}
    report = trace.check(answers)
    rows = [row for f in report.files for row in f.rows]
    hows = {row.how for row in rows}
    assert report.failed == 0 and hows == {"exact"}, hows
    # not one float for one: autograd's sums differ from bptrace's in their last bits
    assert any(row.yours != row.bptrace for row in rows)


def test_a_report_sent_between_processes_comes_back_the_same(tmp_path):
    # --jobs sends each sheet's report as columns; every kind of row must survive the trip
    import pickle
    write(tmp_path, "sheet.yaml", "p1.delta: [[0.0364, 0.0686], [0.0467, -0.0681]]\n"
                                  "c1.grad.kernel: [[0.1, 0.2, 0.3]]\n")      # a wrong shape
    np.savez(tmp_path / "grads.npz", **{"c1.grad.bias": np.float32(0.0836112)})
    report = check_files([ROOT / "scenarios/seed001.yaml"], [tmp_path / "sheet.yaml", tmp_path / "grads.npz"])
    rows = [row for sheet in report.files for row in sheet.rows]
    assert any(row.shape for row in rows) and any(row.written and row.written.dtype for row in rows)
    back = pickle.loads(pickle.dumps(report))
    # the counts come from the columns, the rows are made when read
    assert [(f.passed, f.failed, f.follows) for f in back.files] == [(f.passed, f.failed, f.follows)
                                                                     for f in report.files]
    assert "rows" not in vars(back.files[0])
    assert pickle.loads(pickle.dumps(back)).files[0].failed == report.files[0].failed
    from bptrace.render import check_json
    assert back.files[0].rows[0] is not report.files[0].rows[0]
    assert check_json.render(back) == check_json.render(report) and plain(back) == plain(report)
    assert [row.written for sheet in back.files for row in sheet.rows] == [row.written for row in rows]


def test_the_first_wrong_line_shows_the_answer_as_written(tmp_path):
    # 0.75000000001 is not 0.75; the line naming the first wrong step must not print both as 0.75
    (tmp_path / "s.yaml").write_text("input: [0.5, 0.25]\nlayers:\n  - {type: dense, name: d, weights: [[1, 1]], "
                                     "bias: false}\nloss: {type: half_sse, target: [0]}\n"
                                     "expected: {d.out: 0.75000000001}\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "s.yaml")])
    assert result.exit_code == 1
    assert "  d.out: yours 0.75000000001, bptrace 0.75\n" in result.output, result.output
