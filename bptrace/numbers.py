"""The number system the loops run on, chosen once when a scenario is read.

`arithmetic: float` (the default) runs every loop on Python floats.  `arithmetic: exact`
runs the very same loops on `fractions.Fraction`: every number written in the file is read
as the decimal it is written as (0.1 is 1/10), and +, −, ·, / are exact.  A layer asks its
number system, never `float`, for what the operators cannot give: a tensor of its numbers
(`array`), a written number (`of`), and the functions exp, log, tanh, sqrt.  In exact
arithmetic those have no exact value except at a few points (exp(0) = 1, √(9/16) = 3/4), and
anywhere else raise `NotExact`: the engine then uses the step's pinned (`given`) values, or
refuses the scenario with the layer named.

Like CPython's `statistics`, the type is picked once and converted once at the end: the
engine keeps the exact values for the next step, and the trace carries their floats for
everything that shows or compares numbers, with the exact ones beside them.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np

ARITHMETICS = ("float", "exact", "symbolic")


class NotExact(ArithmeticError):
    """A function without an exact value at this argument (exp(1), √2, log 3)."""

    def __init__(self, function: str, argument, why: str | None = None):
        super().__init__(why or f"{function}({float(argument):.6g}) is not a fraction")
        self.function = function


class Floats:
    """Python floats: the loops as they always ran."""
    name = "float"
    exact = False
    # functions a layer's loops call by name on its number system
    exp, log, tanh, sqrt, erf = math.exp, math.log, math.tanh, math.sqrt, math.erf
    expm1, log1p = math.expm1, math.log1p

    def array(self, values) -> np.ndarray:
        return np.array(values, dtype=float)

    def zeros(self, shape) -> np.ndarray:
        return np.zeros(shape)

    def of(self, value):
        """A number read from the file, as this system holds it."""
        return value

    @staticmethod
    def ratio(top: int, bottom: int):
        """top/bottom of two whole numbers (avgpool's 1/area, a mean's 1/n)."""
        return top / bottom

    def tensor(self, values: np.ndarray) -> np.ndarray:
        """A tensor read from the file (floats), as this system holds it."""
        return values

    def floats(self, values: np.ndarray) -> np.ndarray:
        return values

    @staticmethod
    def own(value) -> bool:
        """Whether a computed element is one of this system's numbers (exact systems: not a
        float that slipped in through a function without an exact value)."""
        return True

    @staticmethod
    def softmax_shift(values):
        """What softmax subtracts from its scores before exp: the largest, so that nothing
        overflows (the ratio is unchanged; exact: exp(0) = 1 is exact at the largest)."""
        return max(values)

    def sigmoid(self, z):
        """σ(z) = 1/(1 + e^(−z)); the two forms avoid overflow of exp for large |z|."""
        if z >= 0:
            return 1 / (1 + self.exp(-z))
        e = self.exp(z)
        return e / (1 + e)

    def carried(self, name: str, values: np.ndarray, base: int = 0) -> np.ndarray:
        """A step's values as the steps after it read them (symbolic: each element by its name)."""
        return values

    def __repr__(self):
        return f"<numbers {self.name}>"


def _only_at(name: str, point: int, value: int):
    """A function whose only rational value, at a rational argument, is `value` at `point`."""
    def function(z):
        if z == point:
            return Fraction(value)
        raise NotExact(name, z)
    function.__name__ = name
    return function


def _exact_sqrt(q: Fraction) -> Fraction:
    if q < 0:
        raise NotExact("√", q)
    top, bottom = math.isqrt(q.numerator), math.isqrt(q.denominator)
    if top * top != q.numerator or bottom * bottom != q.denominator:
        raise NotExact("√", q)
    return Fraction(top, bottom)


class Exact(Floats):
    """`fractions.Fraction`: every written number is the decimal as written."""
    name = "exact"
    exact = True

    def array(self, values) -> np.ndarray:
        return np.array(values, dtype=object)

    def zeros(self, shape) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        out.fill(Fraction(0))
        return out

    def of(self, value):
        if isinstance(value, (Fraction, int)) and not isinstance(value, bool):
            return Fraction(value)
        # a float read from the file: its shortest decimal form, which is the text as
        # written whenever that has at most 15 significant digits (every float that such a
        # text names has no shorter form naming another number)
        return Fraction(repr(float(value)))

    @staticmethod
    def ratio(top: int, bottom: int):
        return Fraction(top, bottom)

    @staticmethod
    def own(value) -> bool:
        return type(value) in (Fraction, int)

    def tensor(self, values: np.ndarray) -> np.ndarray:
        if values.dtype == object:
            return values
        return self.array([self.of(v) for v in values.reshape(-1).tolist()]).reshape(values.shape)

    def floats(self, values: np.ndarray) -> np.ndarray:
        return np.array([_float(v) for v in values.reshape(-1).tolist()], dtype=float).reshape(values.shape)

    # exp, log, tanh, erf: exact only at the one point where their value is rational
    exp = staticmethod(_only_at("exp", 0, 1))
    expm1 = staticmethod(_only_at("exp", 0, 0))
    log = staticmethod(_only_at("log", 1, 0))
    log1p = staticmethod(_only_at("log1p", 0, 0))
    tanh = staticmethod(_only_at("tanh", 0, 0))
    erf = staticmethod(_only_at("erf", 0, 0))
    sqrt = staticmethod(_exact_sqrt)


# Python writes no whole number of more than 4300 digits (sys.get_int_max_str_digits): an
# exact value whose text could need more is refused where it is computed, as no page holds it
MOST_DIGITS = 4000


def too_long(q) -> bool:
    """Whether q's text (its decimals, or p/q) may have more than MOST_DIGITS digits: at most
    0.302 digits per bit of the numerator, plus one decimal per bit of the denominator."""
    return type(q) is Fraction and q.numerator.bit_length() * 0.302 + q.denominator.bit_length() > MOST_DIGITS


def _float(q) -> float:
    """The float nearest q; ±inf past the largest float, as float arithmetic would give."""
    try:
        return float(q)
    except OverflowError:
        return math.inf if q > 0 else -math.inf


FLOAT, EXACT = Floats(), Exact()


def system(name: str):
    """The number system called `name` in `arithmetic:` (symbolic: imports sympy)."""
    if name == "exact":
        return EXACT
    if name == "symbolic":
        from .symbolic import SYMBOLIC

        return SYMBOLIC
    return FLOAT


# --- exact values shown and rounded --------------------------------------------------------

def terminates(q: Fraction) -> bool:
    """Whether q has a finite decimal expansion (its denominator is 2^a·5^b)."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def exact_text(q) -> str:
    """An exact number as written: its whole decimal expansion when that is finite
    (0.0364182), else the fraction in lowest terms (1/3); a formula (`arithmetic: symbolic`)
    as it is written in text."""
    if hasattr(q, "expr"):
        return str(q)
    q = Fraction(q)
    if q.denominator == 1:
        return str(q.numerator)
    if not terminates(q):
        return f"{q.numerator}/{q.denominator}"
    digits, d = 0, q.denominator
    while d != 1:
        d //= math.gcd(d, 10)
        digits += 1
    scaled = q.numerator * 10 ** digits // q.denominator      # exact: q·10^digits is whole
    body = str(abs(scaled)).rjust(digits + 1, "0")
    return f"{'-' if scaled < 0 else ''}{body[:-digits]}.{body[-digits:]}"


FRACTION = re.compile(r"\s*([+-]?\d+)\s*/\s*(\d+)\s*")


def written_fraction(text) -> Fraction | None:
    """`3/8` or `-1/3` as written in an answer: the fraction it names (None: not one)."""
    found = FRACTION.fullmatch(text) if isinstance(text, str) else None
    if found is None or int(found[2]) == 0:
        return None
    return Fraction(int(found[1]), int(found[2]))


def round_exact(q: Fraction, decimals: int, mode: str) -> Fraction:
    """q rounded to `decimals` by `mode` on its true value: no float noise to guess around."""
    scaled = q * 10 ** decimals
    whole = math.floor(scaled) if scaled >= 0 else math.ceil(scaled)     # toward zero
    rest = abs(scaled - whole)
    step = 1 if scaled >= 0 else -1
    if mode == "half_up" and rest >= Fraction(1, 2):
        whole += step
    elif mode == "half_even" and (rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2)):
        whole += step
    return Fraction(whole, 10 ** decimals)
