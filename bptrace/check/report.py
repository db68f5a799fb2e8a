"""The report of a check: a row per compared number, the first wrong step, the diagnosis,
per file and over all files.  Plain data that the renderers format."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from ..scenario import Points, Tolerance
from .answers import Answer
from .matching import FOLLOWS, WRONG, Written, same_number

@dataclass
class Row:
    """One compared number (or one answer of the wrong shape)."""
    name: str
    index: tuple | None           # canonical index; None for a wrong-shape answer
    label: str                    # as a person writes it: c1.grad.kernel[0,1]
    yours: object                 # float, or a nested list for a wrong-shape answer
    bptrace: object               # the clean trace's number (nested list for a wrong shape)
    verdict: str                  # RIGHT, FOLLOWS, WRONG
    how: str                      # "as written (4 decimals)", "follows from your earlier values", "wrong", ...
    written: Written | None = None
    own: float | None = None      # computed from your own earlier values, when that differs
    shape: tuple | None = None    # a wrong-shape answer's shape (squeezed)
    bptrace_shape: tuple | None = None   # and the step's (squeezed)
    answer: Answer | None = None  # a wrong-shape answer, for the catalog
    shown_index: tuple | None = None   # the index as written: length-1 axes dropped, index base added
    element: bool = False         # answered as one element (`name[i,j]`), not as a whole step
    noise: float = 0.0            # the bound on the float noise of bptrace's number

    @property
    def passed(self) -> bool:
        return self.verdict != WRONG

    @property
    def difference(self):
        """yours − bptrace; None for a wrong shape, or when the difference overflows."""
        if self.shape is not None or hasattr(self.yours, "expr"):
            return None           # a formula (`arithmetic: symbolic`): right or wrong, said in `how`
        difference = 0.0 if same_number(self.yours, self.bptrace, self.noise) else self.yours - self.bptrace
        return difference if math.isfinite(difference) else None


@dataclass
class FirstWrong:
    label: str
    name: str
    rule: str
    yours: object
    bptrace: object
    own: float | None
    explain: str                  # the command that explains it
    shape: tuple | None = None    # a wrong-shape answer's shape and the step's (squeezed)
    bptrace_shape: tuple | None = None


@dataclass
class Diagnosis:
    id: str
    message: str
    explains: list                # labels of the wrong answers it reproduces
    layers: list = field(default_factory=list)


@dataclass
class FileReport:
    file: str                     # the answer file, or the scenario holding `expected:`
    scenario: str
    title: str = ""
    tolerance: Tolerance | None = None
    rounding: str | None = None
    rows: list = field(default_factory=list)
    first_wrong: FirstWrong | None = None
    diagnosis: list = field(default_factory=list)
    unexplained: list = field(default_factory=list)
    error: str | None = None      # the file could not be checked (exit status 2)
    points: Points | None = None  # what each answer is worth, for grading (the scenario's or --points)

    @property
    def passed(self) -> int:
        return sum(1 for verdict in self._verdicts() if verdict != WRONG)

    @property
    def failed(self) -> int:
        return sum(1 for verdict in self._verdicts() if verdict == WRONG)

    @property
    def follows(self) -> int:
        return sum(1 for verdict in self._verdicts() if verdict == FOLLOWS)

    # `check --jobs` sends each sheet's report from a worker: its rows go as columns (lists of
    # numbers and strings), which pickle four times faster than thousands of objects, and
    # become rows again only when something reads them (a class's text report needs only
    # the counts, the first wrong step and the diagnosis)
    def __getstate__(self):
        state = dict(self.__dict__)
        state["rows"] = state.pop("_columns") if "_columns" in state else _columns(self.rows)
        return state

    def __setstate__(self, state):
        state = dict(state)
        state["_columns"] = state.pop("rows")
        self.__dict__.update(state)

    def __getattr__(self, name):
        if name == "rows" and "_columns" in self.__dict__:
            self.__dict__["rows"] = _rows(self.__dict__.pop("_columns"))
            return self.__dict__["rows"]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _verdicts(self):
        if "_columns" in self.__dict__:
            return self.__dict__["_columns"][0][_ROW_FIELDS.index("verdict")]
        return [row.verdict for row in self.rows]


_ROW_FIELDS = [f.name for f in fields(Row) if f.name != "written"]
_WRITTEN_FIELDS = [f.name for f in fields(Written)]
_WRITTEN_AT = [f.name for f in fields(Row)].index("written")


def _columns(rows) -> tuple:
    written = [row.written for row in rows]
    return ([[getattr(row, name) for row in rows] for name in _ROW_FIELDS],
            [w is not None for w in written],
            [[getattr(w, name) for w in written if w is not None] for name in _WRITTEN_FIELDS])


def _rows(columns) -> list:
    values, has_written, written_values = columns
    written = iter([Written(*numbers) for numbers in zip(*written_values)])
    at = _WRITTEN_AT
    return [Row(*row[:at], next(written) if has else None, *row[at:]) for row, has in zip(zip(*values), has_written)]


@dataclass
class CheckReport:
    files: list

    @property
    def passed(self) -> int:
        return sum(report.passed for report in self.files)

    @property
    def failed(self) -> int:
        return sum(report.failed for report in self.files)

    @property
    def broken(self) -> int:
        return sum(1 for report in self.files if report.error)

    @property
    def all_right(self) -> int:
        """Sheets that were read and have no wrong answer."""
        return sum(1 for report in self.files if not report.error and not report.failed)

    @property
    def with_wrong_answers(self) -> int:
        return sum(1 for report in self.files if not report.error and report.failed)

    @property
    def exit_code(self) -> int:
        """2 when a file could not be read (even if others were checked), else 1 when an
        answer is wrong, else 0."""
        if self.broken:
            return 2
        return 1 if self.failed else 0

