"""`bptrace check` on answers it must not trust: .npz numbers held to their own float type,
tolerances that cannot be, numbers a float cannot hold, archives that lie about their size,
files that are not files, and a report that stays complete and valid JSON."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

import oracle
from bptrace.cli import main
from conftest import ROOT

SEED001 = ROOT / "scenarios/seed001.yaml"
# seed 001's kernel gradient, from its published answer (8 significant digits)
KERNEL_GRAD = np.array([[0.0445918, 0.09411869], [0.01125765, 0.06831239]]).reshape(1, 1, 2, 2)
GOOD_SHEET = "c1.grad.kernel: [[0.044592, 0.094119], [0.011258, 0.068312]]\n"


def invoke(*args):
    return CliRunner().invoke(main, ["check", *map(str, args)])


def strict_json(text):
    """json.loads that refuses NaN and ±Infinity, as every JSON parser but Python's does."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def npy_bytes(array=None, *, header=None, data=b""):
    """A .npy member: a real array, or a header (dict) followed by raw data."""
    buffer = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(data)
    return buffer.getvalue()


def write_npz(path, members: dict):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return path


# --- .npz numbers at their own float type's precision -------------------------------------

def test_float16_answers_are_right_to_their_own_precision_only(tmp_path):
    np.savez(tmp_path / "exact.npz", **{"c1.grad.kernel": KERNEL_GRAD.astype(np.float16)})
    result = invoke(SEED001, "--expected", tmp_path / "exact.npz")
    assert result.exit_code == 0, result.output
    assert result.output.count("equal at the array's precision") == 4
    for factor in (1.17, 1.01, 0.99):
        np.savez(tmp_path / "off.npz", **{"c1.grad.kernel": (KERNEL_GRAD * factor).astype(np.float16)})
        result = invoke(SEED001, "--expected", tmp_path / "off.npz")
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == "0 passed, 4 failed", factor


def test_one_float16_element_one_percent_off_fails_alone(tmp_path):
    for i in range(4):
        off = KERNEL_GRAD.copy()
        off.reshape(-1)[i] *= 1.01
        np.savez(tmp_path / "off.npz", **{"c1.grad.kernel": off.astype(np.float16)})
        result = invoke(SEED001, "--expected", tmp_path / "off.npz")
        assert result.output.splitlines()[-1] == "3 passed, 1 failed", i


# 0.001 computed beside 1000 in one step: its float noise is its own (1000·0 + 0.001·1 is
# 0.001 in float32 too), not a share of the step's largest number
SMALL_BESIDE_LARGE = ("input: [1000, 0.001]\nlayers:\n"
                      "  - {type: dense, name: d, weights: [[1, 0], [0, 1]], bias: false}\n"
                      "loss: {type: half_sse, target: [0, 0]}\n")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_small_npz_number_beside_a_large_one_is_held_to_its_own_precision(tmp_path, dtype):
    (tmp_path / "s.yaml").write_text(SMALL_BESIDE_LARGE)
    for values, last in (([1000, 0.001], "2 passed, 0 failed"), ([1000, 0.002], "1 passed, 1 failed"),
                         ([1000, 0.00101], "1 passed, 1 failed")):
        np.savez(tmp_path / "a.npz", **{"d.out": np.array(values, dtype=dtype)})
        result = invoke(tmp_path / "s.yaml", "--expected", tmp_path / "a.npz")
        assert result.output.splitlines()[-1] == last, (values, result.output)


def test_a_small_float32_printout_beside_a_large_one_is_held_to_its_own_precision(tmp_path):
    (tmp_path / "s.yaml").write_text(SMALL_BESIDE_LARGE)
    for text, last in (("0.00100000", "1 passed, 0 failed"), ("0.00200000", "0 passed, 1 failed"),
                       ("0.00100100", "0 passed, 1 failed")):
        (tmp_path / "a.yaml").write_text(f"'d.out[1]': {text}\n")
        result = invoke(tmp_path / "s.yaml", "--expected", tmp_path / "a.yaml")
        assert result.output.splitlines()[-1] == last, (text, result.output)


@pytest.mark.parametrize("name, keys", [
    ("stride_padding.yaml", None),
    ("seed000_batch.yaml", None),
    # sums that cancel: deltas near 1e-7 whose float32 values are 1,000+ units off in their last place
    ("zhang2016.yaml", ("C1.delta", "C1.grad.kernel", "S1.delta", "sig1.delta")),
])
def test_float32_pytorch_values_pass(torch, tmp_path, monkeypatch, name, keys):
    """Every value PyTorch computes in float32 (not float64 rounded to float32) is right."""
    monkeypatch.setattr(oracle, "tensor", lambda values: torch.tensor(np.asarray(values, dtype=np.float64),
                                                                       dtype=torch.float32))
    from bptrace.scenario import load

    scenario = load(ROOT / "scenarios" / name)
    values = oracle.global_values(scenario)
    arrays = {key: value.astype(np.float32).reshape(scenario.shapes[key]) for key, value in values.items()
              if key in scenario.shapes and (keys is None or key in keys)}
    assert all(array.dtype == np.float32 for array in arrays.values())
    np.savez(tmp_path / "f32.npz", **arrays)
    result = invoke(ROOT / "scenarios" / name, "--expected", tmp_path / "f32.npz", "--format", "json")
    report = json.loads(result.output)
    assert result.exit_code == 0, [a for a in report["files"][0]["answers"] if a["verdict"] == "wrong"][:3]
    assert report["totals"]["passed"] == sum(array.size for array in arrays.values())


# --- tolerances ---------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, message", [
    ("--tolerance", "nan", "must be a finite number"), ("--rtol", "nan", "must be a finite number"),
    ("--tolerance", "inf", "must be a finite number"), ("--rtol", "inf", "must be a finite number"),
    ("--rtol", "1", "must be below 1"), ("--rtol", "1e308", "must be below 1"),
])
def test_a_tolerance_that_cannot_be_is_refused(option, value, message):
    result = invoke(ROOT / "scenarios/seed001_rounded.yaml", option, value, "--format", "json")
    assert result.exit_code == 2
    assert f"{option}: " in result.output and message in result.output
    assert "{" not in result.output          # no report


@pytest.mark.parametrize("tolerance, line", [("{rel: 1e308}", "tolerance.rel"), ("{abs: 0, rel: 1}", "tolerance.rel"),
                                             ("{abs: 1e-3, rel: 2.5}", "tolerance.rel")])
def test_an_absurd_tolerance_key_is_located(tmp_path, tolerance, line):
    # c1.delta[0,0] is an exact zero, so 5 is wrong at any relative tolerance
    path = tmp_path / "sheet.yaml"
    path.write_text(SEED001.read_text() + f"expected:\n  c1.delta[0,0]: 5\ntolerance: {tolerance}\n")
    result = invoke(path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "sheet.yaml:" in result.output and f"{line}: a relative tolerance must be below 1" in result.output


@pytest.mark.parametrize("tolerance, where", [(".nan", ":36:12: tolerance: '.nan' is not a finite number"),
                                              ("{rel: .inf}", ":36:18: tolerance.rel: '.inf' is not a finite number")])
def test_a_non_finite_tolerance_key_is_located(tmp_path, tolerance, where):
    path = tmp_path / "sheet.yaml"
    path.write_text(SEED001.read_text() + f"expected:\n  c1.delta[0,0]: 5\ntolerance: {tolerance}\n")
    result = invoke(path, "--format", "json")
    assert result.exit_code == 2 and f"sheet.yaml{where}" in result.output
    assert "NaN" not in result.output and "Infinity" not in result.output


# --- numbers a float cannot hold ----------------------------------------------------------

@pytest.mark.parametrize("name, text", [("a.yaml", "c1.grad.kernel[0,0]: 1e-9999999\n"),
                                        ("a.json", '{"c1.grad.kernel[0,0]": 1e-400}'),
                                        ("b.yaml", 'c1.grad.kernel[0,0]: "1e-9999999"\n')])
def test_a_number_that_underflows_to_zero_is_refused(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = invoke(SEED001, "--expected", path)
    assert result.exit_code == 2
    assert f"{name}:1:" in result.output and "too small for a float (it would be read as 0)" in result.output


# --- archives that are not what they say --------------------------------------------------

def test_an_npz_member_that_is_not_an_array(tmp_path):
    for member in ("c1.grad.kernel.npy", "c1.grad.kernel"):
        bad = write_npz(tmp_path / "bad.npz", {member: b"hello"})
        result = invoke(SEED001, "--expected", bad)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "bad.npz: c1.grad.kernel: this member is not a .npy array" in result.output


@pytest.mark.parametrize("header, message", [
    ({"descr": "<f8", "fortran_order": False, "shape": (10 ** 11,)},
     "the array's header declares 100000000000 numbers; c1.grad.kernel has 4"),
    ({"descr": "<f8", "fortran_order": False, "shape": (16384, 16384)},      # 2 GiB
     "the array's header declares 268435456 numbers; c1.grad.kernel has 4"),
    ({"descr": "|O", "fortran_order": False, "shape": (4,)}, "expected numbers, found an array of object"),
    # a negative length read the whole member (8 MiB here; a 1 MB zip of 1 GB made 2 GB), and
    # lengths that are no numbers or multiply to a count that fits were tracebacks
    ({"descr": "<f8", "fortran_order": False, "shape": (-1,)},
     "this member is not a .npy array (its shape (-1,) needs whole numbers of at least 0)"),
    ({"descr": "<f8", "fortran_order": False, "shape": (-2, -2)},
     "this member is not a .npy array (its shape (-2, -2) needs whole numbers of at least 0)"),
    ({"descr": "<f8", "fortran_order": False, "shape": (True, 4)},
     "this member is not a .npy array (its shape (True, 4) needs whole numbers of at least 0)"),
])
def test_an_npz_header_is_checked_before_its_data_is_read(tmp_path, header, message):
    # 8 MB of zeros compress to a few kilobytes: the data a lying header would have read
    bad = write_npz(tmp_path / "bad.npz", {"c1.grad.kernel.npy": npy_bytes(header=header, data=bytes(8 << 20))})
    assert bad.stat().st_size < 100_000
    result = invoke(SEED001, "--expected", bad)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"bad.npz: c1.grad.kernel: {message}" in result.output


def test_an_npz_member_with_more_data_than_its_header(tmp_path):
    blob = npy_bytes(header={"descr": "<f8", "fortran_order": False, "shape": (2, 2)},
                     data=KERNEL_GRAD.tobytes() + bytes(8 << 20))
    bad = write_npz(tmp_path / "bomb.npz", {"c1.grad.kernel.npy": blob})
    result = invoke(SEED001, "--expected", bad)
    assert result.exit_code == 2 and "the array's data does not match its header (2×2 of float64)" in result.output
    cut = write_npz(tmp_path / "cut.npz", {"c1.grad.kernel.npy": blob[:-(8 << 20) - 8]})
    assert "does not match its header" in invoke(SEED001, "--expected", cut).output


def test_npz_arrays_in_fortran_order_and_big_endian(tmp_path):
    good = write_npz(tmp_path / "good.npz", {
        "c1.grad.kernel.npy": npy_bytes(np.asfortranarray(KERNEL_GRAD.reshape(2, 2)).astype(">f4"))})
    result = invoke(SEED001, "--expected", good)
    assert result.exit_code == 0, result.output


def test_a_single_npy_array_is_not_an_npz(tmp_path):
    np.save(tmp_path / "grads.npy", KERNEL_GRAD)
    os.rename(tmp_path / "grads.npy", tmp_path / "grads.npz")
    result = invoke(SEED001, "--expected", tmp_path / "grads.npz")
    assert result.exit_code == 2 and "a single .npy array, not an .npz" in result.output


# --- files that are not files -------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_never_blocks_check(tmp_path):
    directory = tmp_path / "answers"
    directory.mkdir()
    (directory / "good.yaml").write_text(GOOD_SHEET)
    os.mkfifo(directory / "pipe.yaml")
    # a subprocess, so that a regression fails the test instead of hanging the suite
    command = [sys.executable, "-m", "bptrace", "check", str(SEED001), "--format", "json"]
    result = subprocess.run(command + ["--expected", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    good, pipe = json.loads(result.stdout)["files"]
    assert good["file"] == str(directory / "good.yaml") and good["error"] is None and good["passed"] == 4
    assert "pipe.yaml: this is a named pipe, not a regular file" in pipe["error"]
    for name in ("pipe.npz", "pipe.json"):
        os.mkfifo(directory / name)
        result = subprocess.run(command + ["--expected", str(directory / name)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2 and f"{name}: this is a named pipe, not a regular file" in result.stderr
    result = subprocess.run(command + ["--expected", str(directory / "pipe.yaml")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "pipe.yaml: this is a named pipe, not a regular file" in result.stderr


def test_a_device_is_not_an_answer_file():
    result = invoke(SEED001, "--expected", "/dev/zero")
    assert result.exit_code == 2 and "/dev/zero: this is a device, not a regular file" in result.output


# --- the report: complete, valid JSON ----------------------------------------------------

def test_one_broken_file_among_many_has_its_own_entry(tmp_path):
    directory = tmp_path / "answers"
    directory.mkdir()
    (directory / "a_good.yaml").write_text(GOOD_SHEET)
    write_npz(directory / "b_broken.npz", {"c1.grad.kernel.npy": b"hello"})
    (directory / "c_broken.yaml").write_text("c1.grad.kernel: [[0.1, \n")
    np.savez(directory / "d_good.npz", **{"c1.grad.kernel": KERNEL_GRAD.astype(np.float32)})
    output = tmp_path / "report.json"
    result = invoke(SEED001, "--expected", directory, "--format", "json", "-o", output)
    assert result.exit_code == 2
    assert "b_broken.npz" in result.stderr and "c_broken.yaml:2:" in result.stderr
    report = strict_json(output.read_text())
    files = report["files"]
    assert [os.path.basename(f["file"]) for f in files] == ["a_good.yaml", "b_broken.npz", "c_broken.yaml",
                                                            "d_good.npz"]
    assert [f["error"] is None for f in files] == [True, False, False, True]
    assert [(f["passed"], f["failed"]) for f in files] == [(4, 0), (0, 0), (0, 0), (4, 0)]
    assert "this member is not a .npy array" in files[1]["error"]
    assert report["totals"] == {"files": 4, "all_right": 2, "with_wrong_answers": 0, "broken": 2,
                                "passed": 8, "failed": 0}


def test_the_json_report_has_no_infinity(tmp_path):
    path = tmp_path / "huge.yaml"
    # yours − bptrace = −3e308 overflows
    path.write_text("bptrace: 1\ninput: [1.5e+308, 1.0]\n"
                    "layers:\n  - {type: dense, name: h, weights: [[1.0e-300, 1.0]]}\n"
                    "upstream: {layer: h, delta: [1.0]}\nexpected:\n  input: [-1.5e+308, 1.0]\n")
    result = invoke(path, "--format", "json")
    assert result.exit_code == 1
    (first, second) = strict_json(result.output)["files"][0]["answers"]
    assert first["verdict"] == "wrong" and first["difference"] is None
    assert second["difference"] == 0.0
    assert invoke(path).output.splitlines()[-1] == "1 passed, 1 failed"


def test_an_npz_element_holds_one_number(tmp_path):
    for array in (np.zeros(0), np.array([0.0445918, 0.0941187]), np.zeros((10 ** 6,), dtype=np.float32)):
        np.savez(tmp_path / "element.npz", **{"c1.grad.kernel[0,0]": array})
        result = invoke(SEED001, "--expected", tmp_path / "element.npz")
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "c1.grad.kernel[0,0]: c1.grad.kernel[0,0] is one element; save a single number" in result.output


# --- JSON sheets read by the json module --------------------------------------------------

JSON_SHEET = ('{"p1.delta": [[0.0364, 0.0686], [0.0467, -0.0681]],\n'
              ' "c1.grad.kernel": [[0.0445918, 0.09411869], [0.011, 6.831239e-2]],\n'
              ' "c1.delta[0,0]": 0, "input.delta[1,2]": -0.0322827, "c1.out[0,0]": 2.5e-01}\n')


def test_a_json_sheet_reads_as_the_same_sheet_in_yaml(tmp_path):
    # JSON is YAML: the same text read by the json module (its fast path) and by the YAML
    # reader gives the same report, every number's decimals taken from its text
    (tmp_path / "sheet.json").write_text(JSON_SHEET)
    (tmp_path / "sheet.yaml").write_text(JSON_SHEET)
    reports = [strict_json(invoke(SEED001, "--expected", tmp_path / name, "--format", "json").output)["files"][0]
               for name in ("sheet.json", "sheet.yaml")]
    for report in reports:
        del report["file"]
    assert reports[0] == reports[1]
    written = {answer["key"]: answer["written"] for answer in reports[0]["answers"]}
    assert written["c1.grad.kernel[1,1]"] == "6.831239e-2" and written["c1.grad.kernel[1,0]"] == "0.011"
    assert written["c1.out[0,0]"] == "2.5e-01" and written["c1.delta[0,0]"] == "0"


@pytest.mark.parametrize("text, where, message", [
    ('{"p1.delta": [[0.0364, 0.0686], [0.0467, -0.0681]],\n "c9.delta": 1}', ":2:2", "'c9.delta' is not a value"),
    ('{"p1.delta[0,0]": 0.0364,\n "p1.delta[0,0]": 0.0364}', ":2:2", "duplicate key 'p1.delta[0,0]'"),
    ('{"p1.delta[0,0]": NaN}', ":1:", "NaN"),
    ('{"p1.delta": [[0.0364, 0.0686],\n  [0.0467, "x"]]}', ":2:12", "expected a number"),
])
def test_a_json_sheet_that_is_refused_is_located_by_line(tmp_path, text, where, message):
    (tmp_path / "sheet.json").write_text(text)
    result = invoke(SEED001, "--expected", tmp_path / "sheet.json")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"sheet.json{where}" in result.output and message in result.output, result.output


def test_a_float32_value_that_underflows_is_equal_at_the_arrays_precision(tmp_path):
    # σ(−100) is 3.7e-44, a float32 subnormal 26 units from 0; float32 arithmetic gives 0
    # (exp(100) overflows), the right float32 result, while 1e-30 is no such thing
    (tmp_path / "s.yaml").write_text("input: [-100, 1]\nlayers:\n  - {type: sigmoid, name: s}\n"
                                     "loss: {type: half_sse, target: [0, 0]}\n")
    for values, last in (([0.0, 1 / (1 + np.exp(-1))], "2 passed, 0 failed"),
                         ([1e-30, 1 / (1 + np.exp(-1))], "1 passed, 1 failed")):
        np.savez(tmp_path / "a.npz", **{"s.out": np.array(values, dtype=np.float32)})
        result = invoke(tmp_path / "s.yaml", "--expected", tmp_path / "a.npz")
        assert result.output.splitlines()[-1] == last, (values, result.output)


@pytest.mark.parametrize("name", ["answers.yaml", "answers.json"])
def test_a_binary_answer_file_is_called_an_answer_file_not_a_scenario(tmp_path, name):
    # a student's PDF saved under the answer file's name: the message names what was expected
    sheet = tmp_path / name
    sheet.write_bytes(b"%PDF-1.4\n\0\x01\x02binary")
    result = invoke(SEED001, "--expected", sheet)
    assert result.exit_code == 2
    assert "this is a binary file, not an answer file" in result.output
    assert "scenario" not in result.output.split("binary file", 1)[1].splitlines()[0]


def test_the_minus_sign_bptrace_prints_reads_as_a_minus(tmp_path):
    # a number copied from bptrace's own key or report (U+2212, as it prints negatives) is that
    # number, not text that makes the whole sheet unreadable; seed 001's c1.delta[3,3] is
    # -0.06818625
    for text, verdict in (("\u22120.0682", "right"), ("\u22120.0683", "wrong")):
        sheet = tmp_path / "answers.yaml"
        sheet.write_text(f"'c1.delta[3,3]': {text}\n", encoding="utf-8")
        report = json.loads(invoke(SEED001, "--expected", sheet, "--format", "json").output)["files"][0]
        assert report["error"] is None
        assert report["answers"][0]["yours"] == -float(text[1:]) and report["answers"][0]["verdict"] == verdict
