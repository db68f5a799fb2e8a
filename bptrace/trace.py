"""The trace: plain data that every renderer and the checker read.

A `Trace` is the list of `Step`s the engine took, in order.  Each step has a stable name
(BRIEF section 2), the one-line rule it applied, the values it produced (canonical shape),
which values it read, and, for steps small enough to read, how each element was computed
term by term (`Expansion`).  Nothing here computes; renderers only format what is here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .api import StepMethods, TraceMethods
from .tensors import squeeze

PHASES = ("input", "parameter", "forward", "loss", "backward", "update")


class Factor(NamedTuple):
    """One factor of one term: a traced value's element, or a constant with a label.
    (A named tuple rather than a frozen dataclass: a big step records thousands, and a
    named tuple is made in half the time.)"""
    name: str                 # "c1.kernel", "input", ... or a label such as "1/4", "η", "1 − s1.out"
    index: tuple | None       # canonical index into the named value; None for a constant
    value: float


@dataclass
class Expansion:
    """How one element was computed.

    kind "sum":   value = Σ over terms of the product of each term's factors
    kind "max":   value = the largest candidate (each term is one candidate); `winner` is its
                  position in `terms`, `tie` says another candidate was equal
    kind "apply": value = fn(the single factor of the single term)
    """
    kind: str
    terms: list = field(default_factory=list)
    fn: str | None = None
    winner: int | None = None
    tie: bool = False


@dataclass
class StepPart:
    """One reader's contribution to a delta that several readers send back to."""
    layer: str                            # the reader it came through
    rule: str
    values: np.ndarray


@dataclass(repr=False)
class Step(StepMethods):
    name: str
    phase: str
    layer: str | None
    rule: str                             # the rule in words and symbols (notation.text of `notation`)
    values: np.ndarray                    # what later steps use (canonical shape)
    reads: tuple = ()                     # names of the values this step read
    computed: np.ndarray | None = None    # the engine's own result, when rounding or a given value replaced it
    given: np.ndarray | None = None       # bool mask of elements pinned by `given` (or a checker's override)
    rounded: str | None = None            # e.g. "4 decimals, truncate"
    expansions: dict | None = None        # canonical index -> Expansion
    notes: list = field(default_factory=list)
    origin: str | None = None             # input and parameters: where the values came from
    parts: list | None = None             # a delta summed over several readers: each one's StepPart
    noise: np.ndarray | None = None       # each element's bound on the float noise of the engine's own result
                                          # (`computed`, or `values` when nothing replaced it; 0 as written):
                                          # on rounded steps, and on every step of a run with bounds=True
    training_step: int | None = None      # k of the `step{k}.` prefix when the scenario trains several steps
    exact: np.ndarray | None = None       # `arithmetic: exact`: the values as fractions (`values` are their floats)
    notation: object = None               # the rule as structured notation (bptrace.notation), for LaTeX and HTML

    @property
    def shape(self) -> tuple:
        return tuple(self.values.shape)

    @property
    def shown(self):
        """The values as a person sees them (length-1 axes dropped)."""
        return squeeze(self.values)


@dataclass(frozen=True)
class SummaryRow:
    layer: str
    type: str
    out_shape: tuple
    params: int
    reads: tuple = ()                     # what it reads, where that is not the row above


@dataclass(repr=False)
class Trace(TraceMethods):
    name: str
    description: str
    conventions: dict
    summary: list
    steps: list
    loss: float | None = None
    start: str = ""                       # where the backward pass starts, in words
    update: str = ""                      # the update step, in words ("Adam (lr 0.001)"); "" without one
    training_steps: int = 1               # `steps:`; with more than 1 every name is prefixed `step{k}.`
    arithmetic: str = "float"             # `arithmetic:`: float, exact or symbolic
    scenario: object = field(default=None, compare=False)   # set by `bptrace.run`: for explain and check

    def __post_init__(self):
        self._by_name = {step.name: step for step in self.steps}
        for step in self.steps:
            step.trace = self             # a step shows itself with its trace's labels

    def __getitem__(self, name: str) -> Step:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return [step.name for step in self.steps]

    def value(self, name: str) -> np.ndarray:
        return self._by_name[name].values

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.summary)


class Recorder:
    """Collects the terms of the elements being explained while a layer's loop runs.

    Layer code calls `rec.term(at, *factors)` next to the line that computes, guarded by
    `if rec:` so that a step nobody will read costs nothing.  Each factor is
    `(role, index, value)`: a role the layer knows ("kernel", "in", "delta") which the
    engine maps to a traced name, or a label for a constant ("1/4") with index None.
    """

    def __init__(self, roles: dict, want=None, limit: int | None = None):
        self.roles = roles          # role -> traced name
        self.want = want            # set of canonical indices to record, or None for all
        self.limit = limit          # give up (record nothing) past this many terms
        self.count = 0
        self._expansions: dict = {}
        self._raw = False           # sums hold terms as `term` got them, not yet Factors
        self.active = True

    def __bool__(self):
        return self.active

    @property
    def expansions(self) -> dict:
        """canonical index -> Expansion.  `term` keeps its (role, index, value) triples as they
        came, and they become Factors here, once: a step that records past its limit (and
        so keeps nothing) never pays for making them."""
        if self._raw:
            for expansion in self._expansions.values():
                if expansion.kind == "sum":
                    expansion.terms = [term if type(term[0]) is Factor else tuple(map(self._factor, term))
                                       for term in expansion.terms]
            self._raw = False
        return self._expansions

    def _factor(self, factor) -> Factor:
        role, index, value = factor
        # a formula (`arithmetic: symbolic`) is kept: its sums read in letters, not as nan;
        # a fraction (`arithmetic: exact`) too: its terms read 1/3, not 0.3333333333
        kept = hasattr(value, "expr") or type(value) is Fraction
        return Factor(self.roles.get(role, role), index, value if kept else float(value))

    def _slot(self, at, kind: str):
        if self.want is not None and at not in self.want:
            return None
        self.count += 1
        if self.limit is not None and self.count > self.limit:
            self.active = False
            self._expansions = {}
            return None
        expansion = self._expansions.get(at)
        if expansion is None:
            expansion = self._expansions[at] = Expansion(kind)
        return expansion

    def term(self, at, *factors):
        expansion = self._slot(at, "sum")
        if expansion is not None:
            expansion.terms.append(factors)
            self._raw = True

    def apply(self, at, fn: str, factor):
        expansion = self._slot(at, "apply")
        if expansion is not None:
            expansion.fn = fn
            expansion.terms.append((self._factor(factor),))

    def choose(self, at, candidates, winner: int, tie: bool):
        expansion = self._slot(at, "max")
        if expansion is not None:
            expansion.terms = [(self._factor(c),) for c in candidates]
            expansion.winner = winner
            expansion.tie = tie
