"""`arithmetic: symbolic`: the same layer loops run on formulas in the scenario's letters.

A number here is a `Sym`: two sympy expressions and, when every letter in it is bound by
`values:`, its value.  `expr` is the element written in terms of the values its step reads
(c1.delta[0,0] = c2.kernel[0,0] · c2.delta, the way a line of a derivation reads on paper),
`full` the same element substituted all the way down to the scenario's letters (`--expand`).
The engine names each computed step's elements as it hands them on (`carried`), so the next
step's formulas read `c2.delta`, not its whole expansion: formulas stay a line long however
deep the network.

The value is a Fraction while the arithmetic stays rational (letters bound to numbers as
written), a float once exp, log, tanh or √ enter, None while a letter is unbound.  Relu's side,
max-pool's winner and every other comparison need it: unbound, they raise `Unbound`, which the
engine turns into a refusal located at the layer.

sympy is imported here only, and this module only when a scenario asks for symbols.
Letters are made with `sympy.Symbol(name)` from names checked against NAME: text from a file
or a student is never given to `sympify` (it evaluates).
"""
from __future__ import annotations

import math
import random
import re
from fractions import Fraction

import numpy as np
import sympy

from .numbers import Exact, NotExact

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# w11 → w₁₁ (trailing digits: a subscript); w1_2 → w¹₂ (digits, then `_` and digits: the
# superscript names the layer, the subscript the element, as in seed 002's w¹₁)
_PARTS = re.compile(r"([A-Za-z]+?)([0-9]*)(?:_([0-9]+))?\Z")
SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class Unbound(NotExact):
    """A comparison (relu's side, max-pool's winner) on a formula whose letters have no value."""

    def __init__(self, what: str, formula):
        ArithmeticError.__init__(self, f"{what} of {formula} needs numbers")
        self.function = what
        self.message = (f"needs numbers to decide {what}, but {text(formula)} has letters "
                        f"without a value")
        self.hint = "bind the letters with `values:` (e.g. values: {w11: 0.5}), or pin the step with `given:`"


class sigmoid(sympy.Function):
    """σ(z) = 1/(1 + e^(−z)), kept as σ: a textbook writes σ(z), and σ′ = σ·(1 − σ)."""

    @classmethod
    def eval(cls, z):
        if z.is_zero:
            return sympy.Rational(1, 2)

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return 1 / (1 + sympy.exp(-z))

    def _latex(self, printer, exp=None):
        body = rf"\sigma\left({printer._print(self.args[0])}\right)"
        return body if exp is None else rf"{body}^{{{exp}}}"


def _rational(value) -> sympy.Expr:
    q = Fraction(value)
    return sympy.Rational(q.numerator, q.denominator)


class Named(sympy.Dummy):
    """A computed element by its name (c2.delta): what a later step's formula reads.  A new
    letter for every run (a Dummy), holding the element it names, so that `Sym.full` can
    substitute it on request instead of every loop building the whole expansion."""

    def __new__(cls, name, sym):
        obj = super().__new__(cls, name)
        obj.sym = sym
        return obj


def substituted(expr):
    """expr with every named element replaced by its own formula, all the way down."""
    named = [s for s in expr.free_symbols if isinstance(s, Named)]
    return expr.xreplace({s: s.sym.full for s in named}) if named else expr


class Sym:
    """One number of the symbolic system: a formula, and its value when it has one.  `full`
    is the formula substituted all the way down to the scenario's letters, worked out when
    first asked for (the loops build only the formulas in terms of what each step reads)."""
    __slots__ = ("expr", "value", "_full")

    def __init__(self, expr, full=None, value=None):
        self.expr = expr
        self._full = full
        self.value = value

    @property
    def full(self):
        if self._full is None:
            self._full = substituted(self.expr)
        return self._full

    @staticmethod
    def number(value) -> "Sym":
        q = Fraction(value) if not isinstance(value, float) else Fraction(repr(value))
        e = _rational(q)
        return Sym(e, e, q)

    # --- arithmetic: the formula and the value, side by side ---------------------------
    def _op(self, other, f, swap=False):
        if isinstance(other, (float, np.floating)):
            # written numbers became formulas when the scenario was read: a float met in the
            # loops came from float arithmetic (gelu's 1/√2, a math function), and taking its
            # 17 digits for an exact number would show a float as exact
            from .numbers import NotExact
            raise NotExact("floating-point arithmetic", other, f"{float(other):.6g} is a float, not an exact number")
        other = lift(other)
        if other is NotImplemented:
            return NotImplemented
        a, b = (other, self) if swap else (self, other)
        value = None if a.value is None or b.value is None else f(a.value, b.value)
        return Sym(f(a.expr, b.expr), None, value)

    def __add__(self, o): return self._op(o, lambda a, b: a + b)
    def __radd__(self, o): return self._op(o, lambda a, b: a + b, True)
    def __sub__(self, o): return self._op(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._op(o, lambda a, b: a - b, True)
    def __mul__(self, o): return self._op(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._op(o, lambda a, b: a * b, True)
    def __truediv__(self, o): return self._op(o, lambda a, b: a / b)
    def __rtruediv__(self, o): return self._op(o, lambda a, b: a / b, True)

    def __pow__(self, n):
        if not isinstance(n, int):
            return NotImplemented
        return Sym(self.expr ** n, None, None if self.value is None else self.value ** n)

    def __neg__(self):
        return Sym(-self.expr, None, None if self.value is None else -self.value)

    def __pos__(self):
        return self

    # --- comparisons need the value ------------------------------------------------------
    def _known(self, what):
        if self.value is None:
            raise Unbound(what, self.expr)
        return self.value

    def _compare(self, other, f):
        other = lift(other)
        if other is NotImplemented:
            return NotImplemented
        return f(self._known("its side"), other._known("its side"))

    def __gt__(self, o): return self._compare(o, lambda a, b: a > b)
    def __ge__(self, o): return self._compare(o, lambda a, b: a >= b)
    def __lt__(self, o): return self._compare(o, lambda a, b: a < b)
    def __le__(self, o): return self._compare(o, lambda a, b: a <= b)

    def __eq__(self, other):
        # equal values are equal numbers; unbound, the formulas themselves are compared
        other = lift(other)
        if other is NotImplemented:
            return NotImplemented
        if self.value is not None and other.value is not None:
            return self.value == other.value
        return self.expr == other.expr

    def __hash__(self):
        return hash(self.expr)

    def __abs__(self):
        # |x| is x or −x: the side, taken from the value, and said in the formula
        return self if self._known("the sign") >= 0 else -self

    def __bool__(self):
        return bool(self.value != 0) if self.value is not None else self.expr != 0

    def __float__(self):
        return math.nan if self.value is None else float(self.value)

    def __repr__(self):
        return f"Sym({self.expr}, value={self.value})"

    def __str__(self):
        return text(self.expr)


def lift(value):
    """A Sym, or an int, Fraction or float made one (NotImplemented for anything else)."""
    if isinstance(value, Sym):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, np.integer, np.floating)):
        return NotImplemented
    return Sym.number(float(value) if isinstance(value, np.floating) else
                      int(value) if isinstance(value, np.integer) else value)


def _function(z, sym_f, math_f) -> Sym:
    z = lift(z)
    value = z.value
    if isinstance(value, Fraction):
        at = sym_f(_rational(value))       # exp(0) = 1, √(9/16) = 3/4: exact where rational
        value = Fraction(int(at.p), int(at.q)) if at.is_Rational else math_f(float(value))
    elif value is not None:
        value = math_f(value)
    return Sym(sym_f(z.expr), None, value)


def _math_sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


class Symbolic(Exact):
    """Formulas (`arithmetic: symbolic`): Sym numbers, functions kept as functions."""
    name = "symbolic"
    exact = True

    def array(self, values) -> np.ndarray:
        out = np.array(values, dtype=object)
        flat = out.reshape(-1)
        for k, v in enumerate(flat.tolist()):
            if not isinstance(v, Sym):
                flat[k] = lift(v)
        return out

    def zeros(self, shape) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        zero = Sym.number(0)
        for idx in np.ndindex(*out.shape):
            out[idx] = zero
        return out

    def of(self, value):
        return value if isinstance(value, Sym) else lift(value)

    @staticmethod
    def ratio(top: int, bottom: int):
        return Sym.number(Fraction(top, bottom))

    @staticmethod
    def own(value) -> bool:
        return isinstance(value, (Sym, Fraction, int))

    def tensor(self, values: np.ndarray) -> np.ndarray:
        return self.array(np.asarray(values))

    def floats(self, values: np.ndarray) -> np.ndarray:
        return np.array([float(v) for v in values.reshape(-1).tolist()], dtype=float).reshape(values.shape)

    def carried(self, name: str, values: np.ndarray, base: int = 0) -> np.ndarray:
        """A step's values as the next steps read them: each computed element by its name
        (c2.delta), so that their formulas stay in terms of the values they read; letters
        and numbers stay what they are."""
        from .tensors import element

        out = np.empty(values.shape, dtype=object)
        for idx in np.ndindex(*values.shape):
            v = values[idx]
            if isinstance(v, Sym) and not v.expr.is_Atom:
                v = Sym(Named(element(name, values.shape, idx, base), v), None, v.value)
            out[idx] = v
        return out

    @staticmethod
    def softmax_shift(values):
        # nothing to overflow in a formula, and letters cannot be compared: exp(a)/(exp(a) +
        # exp(b)) as on paper
        return 0

    @staticmethod
    def exp(z): return _function(z, sympy.exp, math.exp)
    @staticmethod
    def log(z): return _function(z, sympy.log, math.log)
    @staticmethod
    def tanh(z): return _function(z, sympy.tanh, math.tanh)
    @staticmethod
    def sqrt(z): return _function(z, sympy.sqrt, math.sqrt)
    @staticmethod
    def erf(z): return _function(z, sympy.erf, math.erf)
    @staticmethod
    def expm1(z): return _function(z, lambda e: sympy.exp(e) - 1, math.expm1)
    @staticmethod
    def log1p(z): return _function(z, lambda e: sympy.log(1 + e), math.log1p)
    @staticmethod
    def sigmoid(z): return _function(z, sigmoid, _math_sigmoid)


class _FormulaOps:
    """An expression graph's formulas (`nodes:`) on Sym numbers (formula.py's Ops)."""

    def number(self, text_):
        return Sym.number(Fraction(text_))

    add = staticmethod(lambda a, b: a + b)
    sub = staticmethod(lambda a, b: a - b)
    mul = staticmethod(lambda a, b: a * b)
    div = staticmethod(lambda a, b: a / b)
    neg = staticmethod(lambda a: -a)

    def power(self, a, n):
        if float(n).is_integer():
            return lift(a) ** int(n)
        a = lift(a)
        q = _rational(Fraction(repr(float(n))))
        value = None if a.value is None else float(a.value) ** float(n)
        return Sym(a.expr ** q, None, value)

    def fn(self, name, a):
        return getattr(SYMBOLIC, name)(a)

    def side(self, u) -> int:
        return (u > 0) - (u < 0)

    def value(self, a):
        return a


SYMBOLIC = Symbolic()
Symbolic.formula_ops = _FormulaOps()


# --- reading letters ------------------------------------------------------------------------

class Letters:
    """The scenario's letters as they are read: each a sympy Symbol, and the numbers
    `values:` binds to some of them (Fractions, the decimals as written)."""

    def __init__(self, values: dict | None = None, base: int = 0):
        self.values = dict(values or {})
        self.base = base
        self.seen: dict = {}       # name -> sympy Symbol, in the order first read

    def sym(self, name: str) -> Sym:
        s = self.seen.setdefault(name, sympy.Symbol(name))
        return Sym(s, s, self.values.get(name))

    def tensor(self, value) -> np.ndarray:
        """A nested list of numbers and names (checked by the caller) as Sym numbers."""
        def walk(item):
            if isinstance(item, list):
                return [walk(sub) for sub in item]
            return self.sym(item) if isinstance(item, str) else Sym.number(item)
        out = np.empty(_shape(value), dtype=object)
        flat = np.array(walk(value), dtype=object).reshape(-1) if isinstance(value, list) else [walk(value)]
        out.reshape(-1)[:] = list(flat)
        return out

    def fill(self, prefix: str, shape: tuple) -> np.ndarray:
        """`{symbols: w, shape: [2, 2]}`: w11 w12 / w21 w22, indices counted from the index base."""
        out = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            out[idx] = self.sym(prefix + "".join(str(i + self.base) for i in idx))
        return out


def _shape(value) -> tuple:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0]
    return tuple(shape)


# --- writing formulas ------------------------------------------------------------------------

def pretty_name(name: str) -> str:
    """w11 → w₁₁, w1_2 → w¹₂, c1.delta[0,1] as it is."""
    m = _PARTS.match(name)
    if not m or not (m.group(2) or m.group(3)):
        return name
    head, digits, sub = m.groups()
    if sub is not None:
        return head + digits.translate(SUP) + sub.translate(SUB)
    return head + digits.translate(SUB)


def latex_name(name: str) -> str:
    m = _PARTS.match(name)
    if "[" in name:
        step, index = name.split("[", 1)
        return rf"\mathrm{{{step}}}_{{{index[:-1]}}}"
    if not m or not (m.group(2) or m.group(3)):
        return name
    head, digits, sub = m.groups()
    if sub is not None:
        return rf"{head}^{{{digits}}}_{{{sub}}}"
    return rf"{head}_{{{digits}}}"


class _Text(sympy.printing.str.StrPrinter):
    """sympy's str, as a person writes it: · for ×, w₁₁ for w11, x² for x**2, σ(z)."""

    def _print_Symbol(self, expr):
        return pretty_name(expr.name)

    _print_Dummy = _print_Symbol

    def _print_Mul(self, expr):
        return super()._print_Mul(expr).replace("*", "·")

    def _print_Pow(self, expr, rational=False):
        base, e = expr.as_base_exp()
        if e.is_Integer and int(e) > 1:
            inner = self._print(base)
            if not (base.is_Atom or isinstance(base, sympy.Function)):
                inner = f"({inner})"
            return inner + str(int(e)).translate(SUP)
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_sigmoid(self, expr):
        return f"σ({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"exp({self._print(expr.args[0])})"


_TEXT = _Text({"order": None})


def readable(expr):
    """A formula as a textbook writes it: common factors pulled out where that shortens it,
    never expanded (2·(o − y)·w, not 2·o·w − 2·w·y)."""
    if not expr.is_Atom and sympy.count_ops(expr) <= 400:
        factored = sympy.factor_terms(expr)
        if sympy.count_ops(factored) < sympy.count_ops(expr):
            return factored
    return expr


def text(expr) -> str:
    """A formula in text: Unicode sub- and superscripts, true minus signs."""
    if isinstance(expr, Sym):
        expr = expr.expr
    out = _TEXT.doprint(readable(expr))
    return out.replace("-", "−")


def latex(expr) -> str:
    """A formula in LaTeX (sympy's `latex`), letters with their sub- and superscripts."""
    if isinstance(expr, Sym):
        expr = expr.expr
    names = {s: latex_name(s.name) for s in expr.free_symbols}
    return sympy.latex(readable(expr), symbol_names=names, mul_symbol="dot")


def expand(trace):
    """The trace with every step written all the way down in the scenario's letters
    (`run --expand`): each element's full formula in place of the one in terms of what its
    step reads."""
    for step in trace.steps:
        if step.exact is not None and step.exact.dtype == object:
            full = np.empty(step.exact.shape, dtype=object)
            for idx in np.ndindex(*full.shape):
                v = step.exact[idx]
                full[idx] = Sym(v.full, v.full, v.value) if isinstance(v, Sym) else v
            step.exact = full
            step.expansions = None      # the per-element sums read the named values: not shown expanded
    return trace


# --- checking a formula ---------------------------------------------------------------------

FUNCS = {"exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "abs": sympy.Abs, "sigmoid": sigmoid,
         "tanh": sympy.tanh, "relu": lambda a: sympy.Max(a, 0), "max": sympy.Max, "min": sympy.Min}


def from_formula(text_: str, letters: dict) -> sympy.Expr:
    """A student's formula, parsed by the whitelist parser (formula.py), as a sympy
    expression in the scenario's letters.  Raises formula.FormulaError on a syntax error or
    a name that is not one of the letters."""
    from . import formula as F

    tree = F.parse(text_)
    _products(tree, F.FormulaError)

    def walk(node):
        kind = node.kind
        if kind == "num":
            return _rational(Fraction(node.value))
        if kind == "name":
            if node.value not in letters:
                known = ", ".join(sorted(letters)) or "none"
                raise F.FormulaError(f"`{node.value}` is not one of the scenario's letters ({known})", node.at)
            return letters[node.value]
        args = [walk(a) for a in node.args]
        if kind == "neg":
            return -args[0]
        if kind == "+":
            return args[0] + args[1]
        if kind == "-":
            return args[0] - args[1]
        if kind == "*":
            return args[0] * args[1]
        if kind == "/":
            return args[0] / args[1]
        if kind == "**":
            return args[0] ** _rational(Fraction(node.value))
        return FUNCS[node.value](*args)

    expr = walk(tree)
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        # i1/0 or log(0): sympy's zoo (complex infinity) is no answer to judge
        raise F.FormulaError("the formula divides by zero (or takes log 0): it has no value", 0,
                             "write the formula as the chain rule gives it")
    return expr


# A student's formula is multiplied out to be compared: one that multiplies out to more
# products than a page holds, or raises to a power no exercise asks for, would take sympy
# minutes (i1**99999999, nine-term sums multiplied 8 times), so it is refused as it is read.
MOST_PRODUCTS = 10_000
MOST_POWER = 100


def _products(node, error) -> int:
    """How many products, at most, the formula under `node` multiplies out to (capped)."""
    kind = node.kind
    if kind in ("num", "name"):
        return 1
    counts = [_products(a, error) for a in node.args]
    if kind in ("+", "-", "/"):
        n = counts[0] + counts[1]         # a quotient's top and bottom multiply out apart
    elif kind == "*":
        n = counts[0] * counts[1]
    elif kind == "**":
        power = abs(Fraction(node.value))
        if power > MOST_POWER:
            raise error(f"the power {node.value} is too large for a formula answer (at most {MOST_POWER})",
                        node.at, "write the formula as the chain rule gives it")
        # a sum of t terms to the whole power k multiplies out to at most C(t + k − 1, k) products
        k = math.ceil(power)
        n = math.comb(counts[0] + k - 1, k) if counts[0] > 1 else 1
    else:
        n = counts[0] if counts else 1
    if n > MOST_PRODUCTS:
        raise error(f"the formula multiplies out to too many products (more than {MOST_PRODUCTS:,})", node.at,
                    "write the formula as the chain rule gives it, without multiplying sums together")
    return n


def same_formula(answer, expected, *, trials: int = 5, seed: int = 0) -> tuple[bool, str | None]:
    """Whether two formulas are equal: the difference simplifies to 0, with a numeric spot
    check at random values of the letters as a second opinion.  Wrong: (False, the reason)."""
    difference = sympy.expand(answer - expected)
    if difference != 0 and not difference.is_polynomial():
        # a polynomial expanded is 0 or not; σ, exp, log may need the identities simplify knows
        difference = sympy.simplify(difference)
    letters = sorted(answer.free_symbols | expected.free_symbols, key=lambda s: s.name)
    rng = random.Random(seed)
    spot = None
    for _ in range(trials):
        point = {s: sympy.Rational(rng.randint(-9, 9), rng.randint(1, 5)) for s in letters}
        try:
            a, e = complex(answer.subs(point).evalf()), complex(expected.subs(point).evalf())
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if abs(a - e) > 1e-9 * max(1.0, abs(e)):
            spot = (point, a, e)
            break
    if difference == 0 and spot is None:
        return True, None
    if difference == 0:
        return False, "it simplifies to the right formula, but a numeric spot check disagrees"
    return False, _why(answer, expected, difference)


def _same(a, b) -> bool:
    return sympy.expand(a - b) == 0


def _why(answer, expected, difference) -> str:
    """Why a formula is wrong, in the student's terms: the factors both share set aside, which
    products the rest has that the chain rule's has not (a product of two sums multiplied out
    pairs every term of one with every term of the other), and which it misses."""
    mine = list(sympy.Mul.make_args(answer))
    right = list(sympy.Mul.make_args(readable(expected)))
    shared = []
    for factor in list(mine):
        match = next((r for r in right if _same(factor, r)), None)
        if match is not None:
            mine.remove(factor)
            right.remove(match)
            shared.append(factor)
    rest_mine, rest_right = sympy.Mul(*mine), sympy.Mul(*right)
    have = set(sympy.Add.make_args(sympy.expand(rest_mine)))
    want = set(sympy.Add.make_args(sympy.expand(rest_right)))
    if len(have) + len(want) <= 80 and have != want:
        extra, missing = sorted(have - want, key=str), sorted(want - have, key=str)
        parts = []
        if shared:
            parts.append(f"both have the factor{'s' if len(shared) > 1 else ''} "
                         f"{_short(shared)}; besides {'them' if len(shared) > 1 else 'it'}, ")
        parts.append(f"yours is {text(rest_mine)}, {_count(len(have))} written out, where the chain rule gives "
                     f"{text(rest_right)}, {_count(len(want))}")
        if extra:
            parts.append(f"; yours has {_count(len(extra))} too many ({_list(extra)})")
        if missing:
            parts.append(f"; yours lacks {_list(missing)}")
        return "".join(parts)
    factored = sympy.factor_terms(difference)
    if sympy.count_ops(factored) <= 40:
        return f"it differs from the right formula by {text(factored)}"
    return f"it is not the right formula: {text(expected)}"


def _count(n: int) -> str:
    return f"{n} product{'' if n == 1 else 's'}"


def _list(terms, most: int = 6) -> str:
    shown = ", ".join(text(t) for t in terms[:most])
    return shown + (", …" if len(terms) > most else "")


def _short(factors) -> str:
    """Shared factors named briefly: a long sum by its last term, (… − y)."""
    def one(f):
        written = text(f)
        if len(written) <= 24 or not isinstance(f, sympy.Add):
            return written
        last = _TEXT._as_ordered_terms(f, order=None)[-1]
        tail = f" − {text(-last)}" if last.could_extract_minus_sign() else f" + {text(last)}"
        return f"(…{tail})"
    return " and ".join(one(f) for f in factors)


def formula_answer(scenario, doc, path: tuple, value, what: str):
    """An answer in symbolic mode: a formula (or a number, or a nested list of them) →
    (object array of sympy expressions, [Written...] in C order), each formula parsed by the
    whitelist parser; a syntax error or an unknown letter is refused where it stands."""
    from . import formula as F
    from .check.matching import Written

    letters = dict(scenario.document.letters.seen) if scenario.document and scenario.document.letters else {}
    written = []

    def read(item, where):
        if isinstance(item, list):
            return [read(sub, where + (i,)) for i, sub in enumerate(item)]
        if isinstance(item, bool) or not isinstance(item, (int, float, str)):
            raise doc.error(where, f"expected a formula or a number in {what}, found {type(item).__name__}")
        source = doc.raw.get(where, str(item)) if not isinstance(item, str) else item
        try:
            expr = from_formula(str(source), letters)
        except F.FormulaError as error:
            raise doc.error(where, f"{what}: {error.message} (at character {error.column + 1} of '{source}')",
                            error.hint) from None
        written.append(Written(math.nan, str(source).strip()))
        return expr

    raw = read(value, tuple(path))
    out = np.empty(_shape(raw), dtype=object)
    if isinstance(raw, list):
        flat = np.empty(out.size, dtype=object)
        flat[:] = [e for e in _flatten(raw)]
        out = flat.reshape(out.shape)
    else:
        out[()] = raw
    return out, written


def _flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def check_formulas(report, model, answers, scenario_path: str):
    """`check` in symbolic mode: each answer right when it is the trace's formula (in the
    scenario's letters), whatever its form; wrong with the reason."""
    import shlex

    from .check.matching import RIGHT, WRONG, Written, match
    from .check.report import FirstWrong, Row
    from .tensors import display_index, format_index, fits

    sc = model.scenario
    base = sc.conventions.index_base
    rows = []
    for answer in answers:
        shape = sc.shapes[answer.name]
        step = model.trace[answer.name]
        if answer.index is None and not fits(answer.values.shape, shape):
            rows.append(Row(answer.name, None, answer.key, answer.values.tolist(), None, WRONG,
                            f"wrong shape: yours has {answer.values.size} formulas, the step "
                            f"{int(np.prod(shape))}"))
            continue
        cells = [answer.index] if answer.index is not None else list(np.ndindex(*shape))
        mine = answer.values.reshape(-1).tolist()
        for cell, expr, written in zip(cells, mine, answer.written):
            right = step.exact[cell]
            full = right.full if isinstance(right, Sym) else _rational(right)
            value = right.value if isinstance(right, Sym) else right
            if not expr.free_symbols and value is not None:
                # a number for a step whose letters are all bound: judged as float mode
                # judges it, against the step's value (as written: 0.33 for 1/3)
                how = match(Written(float(expr), written.text), float(value), report.tolerance)
                ok, reason = how is not None, how or (f"yours is {written.text}; with the values bound it is "
                                                      f"{text(full)} = {text(_rational(Fraction(value)))}")
            else:
                ok, reason = same_formula(expr, full)
                reason = reason or "the same formula"
            shown = display_index(shape, cell, base)
            rows.append(Row(answer.name, cell, answer.name + format_index(shown), Sym(expr),
                            Sym(full, full, getattr(right, "value", None)), RIGHT if ok else WRONG,
                            reason, written=written, shown_index=shown,
                            element=answer.index is not None))
    rows.sort(key=lambda row: (model.order[row.name], row.index is None, row.index or ()))
    report.rows = rows
    wrong = [row for row in rows if not row.passed]
    if wrong:
        first = wrong[0]
        report.first_wrong = FirstWrong(first.label, first.name, model.trace[first.name].rule, first.yours,
                                        first.bptrace, None,
                                        f"bptrace explain {shlex.quote(scenario_path)} {shlex.quote(first.label)}")
    return report


# `check` reaches these through the scenario's number system, without importing this module
Symbolic.formula_answer = staticmethod(formula_answer)
Symbolic.check_formulas = staticmethod(check_formulas)
