"""`check --format json`: the whole report as one JSON object, for autograders.

    {"bptrace": 1,
     "files": [{"file", "scenario", "title", "error", "tolerance", "rounding",
                "answers": [{"name", "index", "key", "yours", "written", "bptrace",
                             "from_your_values", "difference", "verdict", "how"}],
                "first_wrong": {...} or null, "diagnosis": [{"id", "explains", "message", "layers"}],
                "unexplained": [...], "passed", "failed"}],
     "totals": {"files", "all_right", "with_wrong_answers", "broken", "passed", "failed"}}

The README ("check --format json") describes every key.  Formats; computes nothing.
"""
from __future__ import annotations

import json
import math


def _answer(row) -> dict:
    return {
        "name": row.name,
        "index": list(row.shown_index) if row.shown_index is not None else None,
        "key": row.label,
        "yours": row.yours,
        "written": row.written.text if row.written else None,
        "bptrace": row.bptrace,
        "from_your_values": row.own,
        "difference": row.difference,
        "verdict": row.verdict,
        "how": row.how,
    }


def file_dict(sheet) -> dict:
    first = sheet.first_wrong
    return {
        "file": sheet.file,
        "scenario": sheet.scenario,
        "title": sheet.title or None,
        "error": sheet.error,
        "tolerance": sheet.tolerance.as_dict() if sheet.tolerance else None,
        "rounding": sheet.rounding,
        "answers": [_answer(row) for row in sheet.rows],
        "first_wrong": None if first is None else {
            "key": first.label, "name": first.name, "rule": first.rule, "yours": first.yours,
            "bptrace": first.bptrace, "from_your_values": first.own, "explain": first.explain},
        "diagnosis": [{"id": d.id, "explains": list(d.explains), "message": d.message, "layers": list(d.layers)}
                      for d in sheet.diagnosis],
        "unexplained": list(sheet.unexplained),
        "passed": sheet.passed,
        "failed": sheet.failed,
    }


def report_dict(report) -> dict:
    return {
        "bptrace": 1,
        "files": [file_dict(sheet) for sheet in report.files],
        "totals": {
            "files": len(report.files),
            "all_right": report.all_right,
            "with_wrong_answers": report.with_wrong_answers,
            "broken": report.broken,
            "passed": report.passed,
            "failed": report.failed,
        },
    }


def _finite(value):
    """JSON has no NaN or infinity: a number that is not finite is written null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if hasattr(value, "expr"):
        return str(value)           # a formula (`arithmetic: symbolic`), as the text report writes it
    return value


def render(report) -> str:
    return json.dumps(_finite(report_dict(report)), ensure_ascii=False, indent=1, allow_nan=False) + "\n"
