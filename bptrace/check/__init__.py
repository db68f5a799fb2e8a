"""`bptrace check`: hand-worked answers held against the trace.

The package's parts, each importing only those above it:

* `matching`: a written number against bptrace's (tolerance, decimals as written, float
  noise) and the verdicts;
* `answers`: reading answers from a scenario's `expected:` and from answer files;
* `report`: the report model the renderers format;
* `mistakes`: the catalog of classic mistakes and which of them reproduce a sheet;
* `checker`: running the check (one clean run per problem, shared by a class's sheets).
* `gradescope`: a checked sheet's grade (points per answer, partial credit), which
  `render/check_gradescope.py` writes as Gradescope's results.json.

The names below are the public ones, as `bptrace.check.NAME`.
"""
from __future__ import annotations

from ..scenario import DEFAULT_WORK_LIMIT, Tolerance
from .answers import ANSWER_SUFFIXES, Answer, answer_files, read_answers, scenario_answers
from .answers import _answers  # noqa: F401  (the Python API reads answers given as a mapping)
from .checker import Checker, Model, check_files
from .matching import (FOLLOWS, FOLLOWS_TEXT, RIGHT, WRONG, Written, command_line_tolerance, evidence, match,
                       references, same_number)
from .report import CheckReport, Diagnosis, FileReport, FirstWrong, Row

__all__ = ["ANSWER_SUFFIXES", "Answer", "CheckReport", "Checker", "DEFAULT_WORK_LIMIT", "Diagnosis", "FOLLOWS",
           "FOLLOWS_TEXT", "FileReport", "FirstWrong", "Model", "RIGHT", "Row", "Tolerance", "WRONG", "Written",
           "answer_files", "check_files", "command_line_tolerance", "evidence", "match", "read_answers",
           "references", "same_number", "scenario_answers"]
