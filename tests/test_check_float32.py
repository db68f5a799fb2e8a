"""Framework printouts: numbers PyTorch computes in float32 and prints with 8 decimals are
right at float32 precision; a wrong 4th significant digit still fails."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import oracle
from bptrace.cli import main
from bptrace.scenario import load
from bptrace.tensors import display_index, format_index
from conftest import ROOT


def float32_values(torch, monkeypatch, scenario):
    monkeypatch.setattr(oracle, "tensor", lambda values: torch.tensor(np.asarray(values, dtype=np.float64),
                                                                       dtype=torch.float32))
    return oracle.global_values(scenario)


def printout(scenario, values, keys, fmt="{:.8f}", change=None) -> str:
    """An answer file as a person pastes a printout: one line per element, as printed."""
    lines = []
    for key in keys:
        array = np.asarray(values[key], dtype=np.float32).reshape(scenario.shapes[key])
        for cell in np.ndindex(*array.shape):
            number = float(array[cell]) if change is None else change(key, cell, float(array[cell]))
            label = key + format_index(display_index(array.shape, cell, scenario.conventions.index_base))
            lines.append(f"'{label}': {fmt.format(number)}")
    return "\n".join(lines) + "\n"


def check(path, answers, tmp_path):
    (tmp_path / "answers.yaml").write_text(answers)
    result = CliRunner().invoke(main, ["check", str(path), "--expected", str(tmp_path / "answers.yaml"),
                                       "--format", "json"])
    return result.exit_code, json.loads(result.output)["files"][0]


@pytest.mark.parametrize("name, keys", [
    ("stride_padding.yaml", ("c1.out", "p1.delta", "input.delta", "h.grad.weights", "c1.grad.kernel")),
    ("seed000_batch.yaml", ("c1.delta", "c2.grad.kernel", "h1.grad.weights", "input.delta")),
    # deltas of Zhang's first layers come out of sums that cancel, from inputs already in float32
    ("zhang2016.yaml", ("C1.delta", "C1.grad.kernel", "C2.grad.bias", "FC.grad.weights")),
])
def test_float32_printouts_with_8_decimals_are_right(torch, monkeypatch, tmp_path, name, keys):
    scenario = load(ROOT / "scenarios" / name)
    values = float32_values(torch, monkeypatch, scenario)
    code, report = check(ROOT / "scenarios" / name, printout(scenario, values, keys), tmp_path)
    wrong = [a for a in report["answers"] if a["verdict"] != "right"]
    assert code == 0 and not wrong, wrong[:3]
    hows = {a["how"] for a in report["answers"]}
    assert "agrees at float32 precision" in hows      # without the rule these were wrong


def test_a_wrong_4th_significant_digit_still_fails(torch, monkeypatch, tmp_path):
    scenario = load(ROOT / "scenarios/stride_padding.yaml")
    values = float32_values(torch, monkeypatch, scenario)
    monkeypatch.undo()
    exact = oracle.global_values(scenario)
    keys = ("c1.out", "h.grad.weights")

    def off(key, cell, number):
        # one unit of the 4th significant digit of bptrace's number, on the float32 printout
        ref = float(np.asarray(exact[key]).reshape(scenario.shapes[key])[cell])
        return number + 10 ** (math.floor(math.log10(abs(ref))) - 3) if abs(ref) >= 1e-3 else number

    code, report = check(ROOT / "scenarios/stride_padding.yaml", printout(scenario, values, keys, change=off),
                         tmp_path)
    changed = [a for a in report["answers"] if abs(a["bptrace"]) >= 1e-3]
    assert changed and all(a["verdict"] == "wrong" for a in changed)


def test_few_digits_keep_the_as_written_rule(torch, monkeypatch, tmp_path):
    """4 decimals of a float32 number are held to their last digit, as before: 0.1236 is
    not right for 0.12344."""
    scenario = load(ROOT / "scenarios/stride_padding.yaml")
    values = float32_values(torch, monkeypatch, scenario)
    code, report = check(ROOT / "scenarios/stride_padding.yaml",
                         printout(scenario, values, ("h.grad.weights",), fmt="{:.4f}",
                                  change=lambda key, cell, number: number + math.copysign(2e-4, number)), tmp_path)
    assert all(a["verdict"] == "wrong" and a["how"] == "wrong" for a in report["answers"]), [a for a in report["answers"] if a["how"] != "wrong"]


def test_seven_significant_digits_count_as_a_printout(tmp_path):
    from bptrace.check import Written
    assert Written(123.4567, "123.4567").precise and Written(0.12345678, "0.12345678").precise
    assert not Written(0.123456, "0.123456").precise and not Written(0.1, None).precise


def test_only_a_text_a_float32_prints_is_a_printout():
    """0.75000000001 is no float32's printout (the float32 nearest to it is 0.75): it is held
    to float64's noise, not float32's.  What frameworks print of a float32 is one."""
    from bptrace.check import Written
    f32 = float(np.float32(0.0364182))                  # 0.036418199539184570...
    for text in ("0.03641820", "0.036418200", repr(f32), "3.6418200e-02", "0.036418199539", "1234567"):
        assert Written(float(text), text).precise, text
    for text in ("0.75000000001", "0.03641820000001", "123.45678901", repr(0.1 + 0.2)):
        assert not Written(float(text), text).precise, text
