"""The report of a check: a row per compared number, the first wrong step, the diagnosis,
per file and over all files.  Plain data that the renderers format."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..scenario import Tolerance
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

    @property
    def passed(self) -> bool:
        return self.verdict != WRONG

    @property
    def difference(self):
        """yours − bptrace; None for a wrong shape, or when the difference overflows."""
        if self.shape is not None or hasattr(self.yours, "expr"):
            return None           # a formula (`arithmetic: symbolic`): right or wrong, said in `how`
        difference = 0.0 if same_number(self.yours, self.bptrace) else self.yours - self.bptrace
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

    @property
    def passed(self) -> int:
        return sum(1 for row in self.rows if row.passed)

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if not row.passed)

    @property
    def follows(self) -> int:
        return sum(1 for row in self.rows if row.verdict == FOLLOWS)


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

