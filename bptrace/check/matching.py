"""Comparing a written number with bptrace's: the tolerance in force, the number as written
(its decimals read from its text), float noise, and the verdicts.

Also `references`: the numbers a step's answers are held against in a run.
"""
from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property

import numpy as np

from ..errors import ScenarioError
from ..rounding import round_array, round_number
from ..scenario import Scenario, Tolerance, tolerance_problem

# "Exact" is to each number's own float noise, not a rule for every number: a written
# number is bptrace's when |a − b| ≤ the bound on the float noise of that very element
# (`Step.noise`, from the terms that made it) plus half a unit in the last binary place of
# the written number (a decimal such as 0.1 is itself not a float).  So 0.75000000001 is
# not 0.75, nor 0 a sum of 5e-13, while a float64 framework's number, summed in another
# order, is.
# Before rounding a computed number to the decimals a person wrote, keep this many
# significant digits: 0.04675 computed as 0.046749999999999997 rounds up, as on paper.
DENOISE_DIGITS = 12
# Numbers from an .npz have no text to read decimals from.  Each is right within NPZ_ULPS
# units in the last place of its own float type at its own magnitude (storing bptrace's number
# in that type costs half of one), plus that element's own float64 noise bound taken in the
# type's epsilons (float32's for coarser types: float16 arrays are float32 results stored
# small): a sum that cancels (a delta of 1e-7 out of terms near 1) keeps the absolute error
# of its terms and of what its inputs carried, and the bound follows exactly those.  Over the
# 35,045 float32 PyTorch numbers of the shipped scenarios without `given` or rounding, the
# largest part of that bound used is 0.11.  (Before, 16 epsilons of the step's largest
# magnitude: 0.002 passed for 0.001 beside a 1000.)
NPZ_ULPS = 4
F64_EPS = float(np.finfo(np.float64).eps)
# An .npz array may hold at most this many numbers, or its step's count when that is more
# (a wrong-shape answer is reported as such); checked in its header before any data is read.
NPZ_MIN_LIMIT = 10_000
# A number written as a framework prints a float32 (8 or more decimals, or 7 or more
# significant digits, that a float32 rounded to them gives) claims float32's precision, not
# its own last digit.  It is right within half a unit of its last decimal (the printout's
# rounding) plus what float32 arithmetic makes of its sum: F32_UNITS float32 epsilons of
# Σ|terms| (a sum's rounding error grows with its terms, whatever cancels), plus its float64
# noise bound in float32 epsilons (the error its inputs carry from earlier sums that
# cancelled).  Over 35,045 float32 PyTorch numbers of the shipped scenarios printed with 8
# decimals, the largest part of the noise term used is 0.11, and no number of at least 0.001
# and a tenth of its terms passes with its 4th significant digit one off.
PRECISE_DECIMALS = 8
PRECISE_DIGITS = 7
F32_UNITS = 4
F32_EPS = float(np.finfo(np.float32).eps)
F32_TEXT = "agrees at float32 precision"
NPZ_DIGITS = 6          # what a match with a number without text (.npz, export) is worth, in digits

RIGHT, FOLLOWS, WRONG = "right", "follows", "wrong"
FOLLOWS_TEXT = "follows from your earlier values"


# --- tolerance ----------------------------------------------------------------------------

def command_line_tolerance(absolute: float | None, relative: float | None) -> Tolerance | None:
    """--tolerance ABS and --rtol REL, held to the rules of a scenario's `tolerance:`."""
    if absolute is None and relative is None:
        return None
    for option, key, value in (("--tolerance", "abs", absolute), ("--rtol", "rel", relative)):
        problem = tolerance_problem(key, value) if value is not None else None
        if problem:
            raise ScenarioError(problem, key=option)
    return Tolerance(absolute or 0.0, relative or 0.0)


# --- numbers as written -------------------------------------------------------------------

@dataclass(frozen=True)
class Written:
    """One number of a sheet: its value, and its text as written by a person (None from an
    .npz, or from a program's export, whose digits are a float's and not a claim)."""
    value: float
    text: str | None
    dtype: str | None = None   # an .npz number's float type ("float32"), which sets its precision
    magnitude: float = 0.0     # Σ|terms| of its sum, for a precise number (0: not known)

    def slack(self, value: float, noise: float = 0.0) -> float:
        """How far from `value`, whose float64 noise is at most `noise`, an .npz number may be
        and still be that number (0 without a float type): see NPZ_ULPS."""
        if self.dtype is None:
            return 0.0
        info = np.finfo(self.dtype)
        eps = float(info.eps)
        ulp = max(math.ldexp(eps, math.frexp(abs(value))[1] - 1), float(info.smallest_subnormal))
        # below the normal range of the arithmetic that made it (float32's for float16 arrays)
        # a number has no relative precision left: σ(−100) is 3.7e-44, float32 makes 0
        tiny = float(np.finfo(np.promote_types(self.dtype, np.float32)).tiny)
        return NPZ_ULPS * ulp + noise * min(eps, F32_EPS) / F64_EPS + tiny

    @cached_property
    def precise(self) -> bool:
        """Written as a framework prints a float32 (8+ decimals or 7+ significant digits,
        and a float32's digits)."""
        return self.text is not None and ((self.decimals or 0) >= PRECISE_DECIMALS
                                          or (self.digits or 0) >= PRECISE_DIGITS) and self.float32

    @property
    def float32(self) -> bool:
        """The text can be a float32 as a framework prints it: the float32 nearest to it,
        rounded to the text's decimals (as printing rounds), gives the text back.
        0.75000000001 cannot (the float32 nearest to it is 0.75), so it is held to float64's
        noise, not float32's."""
        return _float32_text(self.text, self.value)

    @property
    def digits(self) -> int | None:
        """Significant digits the text claims: 0.0364 → 3, 0.0360 → 3, 0 → 1."""
        return None if self.text is None else _claims(self.text)[1]

    @property
    def decimals(self) -> int | None:
        """Decimals the text claims: 0.0360 → 4, 1.5e-3 → 4, 2 → 0; None without text."""
        return None if self.text is None else _claims(self.text)[0]

    def but(self, *, magnitude: float) -> "Written":
        """A copy with its sum's magnitude known (`dataclasses.replace`, without its cost: a
        class's sheets make hundreds of thousands)."""
        return Written(self.value, self.text, self.dtype, magnitude)


@functools.lru_cache(maxsize=1 << 16)
def _claims(text: str) -> tuple[int, int]:
    """(decimals, significant digits) a number's text claims; a class's sheets repeat the
    same texts, so each is read once."""
    try:
        parts = Decimal(text.replace("_", "").strip()).as_tuple()
    except InvalidOperation:
        return 0, 1
    exponent = parts.exponent
    return (-exponent if isinstance(exponent, int) and exponent < 0 else 0), max(1, len(parts.digits))


@functools.lru_cache(maxsize=1 << 16)
def _float32_text(text: str, value: float) -> bool:
    """`Written.float32` of the number `value` read from `text`; a class's sheets repeat the
    same texts, so each is tested once."""
    try:
        exponent = Decimal(text.replace("_", "").strip()).as_tuple().exponent
    except InvalidOperation:
        return False
    try:
        # rounds to the nearest float32 as numpy's cast does; past float32's range no
        # float32's text (numpy's cast gives inf there)
        nearest = _F32.unpack(_F32.pack(value))[0]
    except OverflowError:
        return False
    if not isinstance(exponent, int) or not math.isfinite(nearest):
        return False
    if nearest == value:
        return True
    if exponent > 0:                              # 1.234567e10: rounded to whole 10^exponent
        return round(nearest, -exponent) == value
    return float(f"{nearest:.{-exponent}f}") == value


_F32 = struct.Struct("f")


def _plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def match(written: Written, value: float, tolerance: Tolerance, noise: float = 0.0) -> str | None:
    """How `written` matches the computed `value`, whose float noise is at most `noise`
    (a phrase for the report), or None."""
    mine = written.value
    if not math.isfinite(value):
        return None
    if not tolerance.as_written:
        return "within tolerance" if abs(mine - value) <= tolerance.abs + tolerance.rel * abs(value) else None
    if same_number(mine, value, noise, written.slack(value, noise)):
        return "equal at the array's precision" if written.dtype else "exact"
    decimals = written.decimals
    if not decimals:
        # A whole number (no decimals) is taken as exact: "0" is not right for 0.3.
        return None
    clean = float(f"{value:.{DENOISE_DIGITS}g}")
    if round_number(clean, decimals, "half_up") == mine:
        return f"as written ({_plural(decimals, 'decimal')})"
    if round_number(clean, decimals, "truncate") == mine:
        return f"matches when truncated ({_plural(decimals, 'decimal')})"
    if written.magnitude and abs(mine - value) <= 0.5 * 10.0 ** -decimals + F32_EPS * (
            F32_UNITS * written.magnitude) + noise * F32_EPS / F64_EPS:
        return F32_TEXT
    return None


def near(written: Written, value: float, decimals: int, noise: float = 0.0) -> bool:
    """Within one unit of the last decimal that both the written number and the rounding in
    force (`decimals`) have: how a sheet worked with its own rounding compares with a chain
    of numbers rounded another way (`--round 4 --mode truncate` against 6 decimals half-up).
    `noise`: the bound on `value`'s float noise; the unit and both numbers, as floats, are
    each off their decimals by half a unit in their last place."""
    if written.text is None or not math.isfinite(value):
        return False
    unit = 10.0 ** -min(written.decimals or 0, decimals)
    return abs(written.value - value) <= unit + noise + 0.5 * (math.ulp(unit) + math.ulp(value)
                                                               + math.ulp(written.value))


def evidence(written: Written, tolerance: Tolerance) -> float:
    """How many significant digits a match with this number is worth: what it claims as
    written, what the tolerance resolves of it, or a float's worth without text (.npz, export)."""
    if not tolerance.as_written:
        width = tolerance.abs + tolerance.rel * abs(written.value)
        ratio = abs(written.value) / width if width > 0 else 0.0
        return max(0.0, math.log10(ratio)) if ratio > 0 else 0.0
    return written.digits if written.text is not None else NPZ_DIGITS


def same_number(a: float, b: float, noise: float = 0.0, slack: float = 0.0) -> bool:
    """The written number `a` is bptrace's `b`, whose float noise is at most `noise` (or
    within `slack` of it): see the rule above."""
    return abs(a - b) <= noise + 0.5 * math.ulp(a) + slack


class References(dict):
    """name → each step's numbers as `references` makes them, and `.noise`: name → each
    element's bound on their float noise (0 where rounded or given: exact as written)."""

    def __init__(self):
        super().__init__()
        self.noise: dict = {}


def references(trace, scenario: Scenario) -> References:
    """Each step's numbers as a careful worker would have them in this run: what the step
    computed from what it read (rounded where the scenario rounds), with the problem's
    `given` values in place, but not the answers pinned onto it.  Each step's noise bounds
    come from a run with bounds=True (zeros without them)."""
    out = References()
    for step in trace.steps:
        # a bound that overflowed says nothing: such a number is held as written
        noise = np.zeros(step.values.shape) if step.noise is None else \
            np.where(np.isfinite(step.noise), step.noise, 0.0)
        if step.computed is None:
            out[step.name], out.noise[step.name] = step.values, noise
            continue
        values = step.computed
        if step.rounded:
            values = round_array(values, scenario.rounding.decimals, scenario.rounding.mode, step.noise)
            noise = np.zeros(values.shape)
        given = scenario.given.get(step.name)
        if given is not None:
            values = np.where(given.mask, given.values, values)
            noise = np.where(given.mask, 0.0, noise)
        out[step.name], out.noise[step.name] = values, noise
    return out

