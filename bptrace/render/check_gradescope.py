"""`check --format gradescope`: a graded sheet as Gradescope's results.json.

    {"score": 7.5, "execution_time": 2, "output": "...", "visibility": "visible",
     "stdout_visibility": "hidden",
     "tests": [{"name": "c1.grad.kernel", "score": 1.5, "max_score": 3, "status": "failed",
                "output": "2 of 4 numbers right ...", "visibility": "visible"}]}

The keys are those of Gradescope's autograder specification (score, execution_time in
whole seconds, output, visibility, stdout_visibility, tests with name, score, max_score,
status, output, visibility).  The README ("Gradescope") describes the grading.  Formats
the `Grade`; computes nothing.
"""
from __future__ import annotations

import json
import math

from ..check import FOLLOWS_TEXT
from .common import all_right_text, first_wrong_text, signed

# how many wrong numbers a test's output names before "and N more"
SHOWN_WRONG = 5


def _wrong(row) -> str:
    if row.shape is not None:
        return f"{row.label}: {row.how}"
    own = f" ({signed(row.own)} from your own earlier values)" if row.own is not None else ""
    return f"{row.label}: yours {row.written.text if row.written and row.written.text else signed(row.yours)}, " \
           f"bptrace {signed(row.bptrace)}{own}"


def _test_output(test) -> str:
    if not test.answered:
        return f"not answered ({test.numbers} number{'s' * (test.numbers != 1)} asked)"
    lines = [f"{test.right} of {test.numbers} number{'s' * (test.numbers != 1)} right"
             + (f" ({test.follows} {FOLLOWS_TEXT}, which earns their credit)" if test.follows else "")]
    wrong = test.wrong
    lines += [f"  ✗ {_wrong(row)}" for row in wrong[:SHOWN_WRONG]]
    if len(wrong) > SHOWN_WRONG:
        lines.append(f"  and {len(wrong) - SHOWN_WRONG} more wrong")
    return "\n".join(lines)


def _output(grade) -> str:
    sheet = grade.sheet
    lines = [sheet.title] if sheet.title else []
    lines.append(f"score: {_points(grade.score)} of {_points(grade.max_score)}")
    if sheet.error:
        lines.append(f"could not be graded: {sheet.error}")
        return "\n".join(lines)
    first = sheet.first_wrong
    if first is None:
        lines.append(all_right_text(sheet.follows))
    else:
        lines.append(f"first wrong step: {first.name}")
        lines.append(f"  rule: {first.rule}")
        lines.append(f"  {first_wrong_text(first)}")
        for diagnosis in sheet.diagnosis:
            lines.append(f"likely mistake: {diagnosis.id} — {diagnosis.message}")
        if not sheet.diagnosis:
            lines.append("likely mistake: no known mistake explains this")
    return "\n".join(lines)


def _points(value: float):
    """2.0 → 2: whole points as whole numbers."""
    return int(value) if float(value).is_integer() else value


def results(grade, visibility: str = "visible") -> dict:
    out = {"score": _points(grade.score)}
    if grade.execution_time is not None and math.isfinite(grade.execution_time):
        out["execution_time"] = max(0, round(grade.execution_time))
    out["output"] = _output(grade)
    out["visibility"] = visibility
    out["stdout_visibility"] = "hidden"
    out["tests"] = [{"name": test.name, "score": _points(test.score), "max_score": _points(test.max_score),
                     "status": "passed" if test.passed else "failed", "output": _test_output(test),
                     "visibility": visibility} for test in grade.tests]
    return out


def render(grade) -> str:
    return json.dumps(results(grade), ensure_ascii=False, indent=1, allow_nan=False) + "\n"
