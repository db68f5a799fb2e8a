"""Grading a checked sheet for Gradescope: each answer (or each answer the points list)
is a test worth its points, earning the share of its numbers that passed.

A number passes as `check` says: right, or "follows from your earlier values" (a value
wrong only because an earlier answer was wrong earns its credit, so one slip costs its
own step and nothing after it).  A wrong-shape answer earns nothing; an answer the points
list but the sheet lacks is a failed test worth 0.  Plain data that
`render/check_gradescope.py` formats as Gradescope's results.json.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ScenarioError
from ..scenario import Points
from .matching import FOLLOWS
from .report import CheckReport, FileReport

# scores are sums of fractions of points: shown to 6 decimals, as no grade needs more
DECIMALS = 6


@dataclass
class GradedAnswer:
    """One Gradescope test: an answer key and what it earned."""
    name: str                     # the answer key: c1.grad.kernel, or p1.delta[0,1]
    max_score: float
    score: float
    numbers: int                  # how many numbers the answer covers
    right: int                    # of them passed (right or following from earlier values)
    follows: int                  # of them passed as following from earlier values
    rows: list = field(default_factory=list)   # the report's rows of this answer

    @property
    def answered(self) -> bool:
        return bool(self.rows)

    @property
    def passed(self) -> bool:
        return self.answered and self.right == self.numbers

    @property
    def wrong(self) -> list:
        return [row for row in self.rows if not row.passed]


@dataclass
class Grade:
    sheet: FileReport             # what was checked (its first wrong step, diagnosis, error)
    tests: list                   # GradedAnswer, in the order of the trace (or of the points list)
    execution_time: float | None = None

    @property
    def score(self) -> float:
        return round(sum(test.score for test in self.tests), DECIMALS)

    @property
    def max_score(self) -> float:
        return round(sum(test.max_score for test in self.tests), DECIMALS)


def _earned(points: float, right: int, numbers: int) -> float:
    return round(points * right / numbers, DECIMALS) if numbers else 0.0


def grade(sheet: FileReport, execution_time: float | None = None) -> Grade:
    points = sheet.points or Points()
    tests = []
    if points.listed:
        for key, name, index, worth, size in points.listed:
            # a wrong-shape answer of the step answers each of its elements, wrongly
            rows = [row for row in sheet.rows
                    if row.name == name and (index is None or row.index == index or row.shape is not None)]
            right = sum(1 for row in rows if row.passed)
            tests.append(GradedAnswer(key, worth, _earned(worth, right, size), size, right,
                                      sum(1 for row in rows if row.verdict == FOLLOWS), rows))
        return Grade(sheet, tests, execution_time)
    groups: dict = {}
    for row in sheet.rows:
        # an element answered alone is its own answer; a whole step's numbers are one answer
        groups.setdefault(row.label if row.element else row.name, []).append(row)
    for key, rows in groups.items():
        right = sum(1 for row in rows if row.passed)
        tests.append(GradedAnswer(key, points.each, _earned(points.each, right, len(rows)), len(rows), right,
                                  sum(1 for row in rows if row.verdict == FOLLOWS), rows))
    return Grade(sheet, tests, execution_time)


def grade_report(report: CheckReport, execution_time: float | None = None) -> Grade:
    """The grade of a report of one sheet (Gradescope grades one submission at a time)."""
    if len(report.files) != 1:
        raise ValueError(f"a Gradescope result is one submission's; this report has {len(report.files)}")
    return grade(report.files[0], execution_time)


def command_line_points(values) -> object:
    """`--points N` (each answer) or `--points KEY=N` repeated → what `points:` holds."""
    values = [value.strip() for value in values or ()]
    if not values:
        return None
    pairs = [value for value in values if "=" in value]
    if pairs and len(pairs) != len(values) or not pairs and len(values) != 1:
        raise ScenarioError("give one number (every answer) or KEY=N pairs, not both",
                            key="--points", hint="--points 2, or --points p1.delta=2 --points c1.grad.kernel=3")
    if not pairs:
        return _number(values[0])
    listed = {}
    for pair in pairs:
        key, _, number = pair.rpartition("=")
        if key.strip() in listed:
            # the last one winning would silently drop the other
            raise ScenarioError(f"--points gives {key.strip()} twice", key="--points", hint="give each key once")
        listed[key.strip()] = _number(number)
    return listed


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"'{text}' is not a number of points", key="--points") from None
    # refused here, as the command line's mistake, before any sheet is read or report written
    if not math.isfinite(value) or value < 0:
        raise ScenarioError(f"points must be a number of at least 0, found {text}", key="--points",
                            hint="--points 2, or --points p1.delta=2 --points c1.grad.kernel=3")
    return value
