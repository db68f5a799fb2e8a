"""Formulas of an expression graph (`nodes: {q: x + y, f: q * z}`): a whitelist parser and
reverse mode over the parsed tree.

The parser is a small Pratt parser over a fixed grammar, so that text from a file is never
run (no `eval`, no `sympify`):

    formula := sum
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := "-" unary | power
    power   := atom ("**" exponent)?          exponent: a number, signed or in parentheses
    atom    := number | name | function "(" formula ("," formula)? ")" | "(" formula ")"

As in Python, `**` binds tighter than unary minus (−x**2 is −(x²)) and groups to the right.
Functions: exp log sqrt abs sigmoid tanh relu (one argument), max min (two).

Every number operation goes through an `Ops` object (`FLOAT` here; `NOISY` carries a float
together with an interval for the float-noise bounds), so that another number type
(fractions, symbols) plugs in by giving its own `Ops`.  The local gradient ∂formula/∂name is
reverse mode over the tree: the adjoints of a name read twice (x * x) add up.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from . import notation as N

FUNCTIONS = {"exp": 1, "log": 1, "sqrt": 1, "abs": 1, "sigmoid": 1, "tanh": 1, "relu": 1, "max": 2, "min": 2}
KINKS = ("abs", "relu", "max", "min")       # functions that decide on their argument's side
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class FormulaError(ValueError):
    """A formula that cannot be read; `column` is the 0-based offset in the formula text."""

    def __init__(self, message: str, column: int, hint: str | None = None):
        super().__init__(message)
        self.message, self.column, self.hint = message, column, hint


# --- the tree ---------------------------------------------------------------------------

@dataclass(eq=False)
class Node:
    kind: str                  # "num", "name", "neg", "+", "-", "*", "/", "**", "call"
    args: tuple = ()
    value: object = None       # num: the number's text; name: the name; call: the function; **: the exponent's text
    at: int = 0                # where it starts in the formula text
    id: int = field(default=0)


def names(tree: Node) -> list:
    """The names a formula reads, in the order they first appear."""
    found = []

    def walk(node):
        if node.kind == "name" and node.value not in found:
            found.append(node.value)
        for arg in node.args:
            walk(arg)
    walk(tree)
    return found


def has_kinks(tree: Node) -> bool:
    return (tree.kind == "call" and tree.value in KINKS) or any(has_kinks(arg) for arg in tree.args)


# --- the parser -------------------------------------------------------------------------

def _tokens(text: str) -> list:
    """(kind, text, column) tokens; kind "num", "name", "op" or "end"."""
    tokens, k = [], 0
    while k < len(text):
        ch = text[k]
        if ch.isspace():
            k += 1
            continue
        number = NUMBER.match(text, k)
        if number:
            tokens.append(("num", number.group(), k))
            k = number.end()
            continue
        name = NAME.match(text, k)
        if name:
            tokens.append(("name", name.group(), k))
            k = name.end()
            continue
        if text.startswith("**", k):
            tokens.append(("op", "**", k))
            k += 2
            continue
        if ch in "+-*/(),":
            tokens.append(("op", ch, k))
            k += 1
            continue
        hint = "write powers as x ** 2" if ch == "^" else \
            "operators are + - * / **; functions " + ", ".join(FUNCTIONS)
        raise FormulaError(f"unexpected character '{ch}' in the formula", k, hint)
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    BINDING = {"+": 10, "-": 10, "*": 20, "/": 20}

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.k = 0
        self.count = 0

    def peek(self):
        return self.tokens[self.k]

    def take(self):
        token = self.tokens[self.k]
        self.k += 1
        return token

    def node(self, kind, args=(), value=None, at=0) -> Node:
        self.count += 1
        return Node(kind, tuple(args), value, at, self.count)

    def expect(self, op: str, why: str):
        kind, text, at = self.peek()
        if (kind, text) != ("op", op):
            found = "the end of the formula" if kind == "end" else f"'{text}'"
            raise FormulaError(f"expected '{op}' {why}, found {found}", at)
        self.take()

    def parse(self) -> Node:
        if self.peek()[0] == "end":
            raise FormulaError("the formula is empty", 0, "write e.g. x + y")
        tree = self.expression(0)
        kind, text, at = self.peek()
        if kind != "end":
            hint = "write the operator: 2 * x, not 2x" if kind in ("num", "name") or text == "(" else None
            raise FormulaError(f"unexpected '{text}' after a complete formula", at, hint)
        return tree

    def expression(self, floor: int) -> Node:
        left = self.unary()
        while True:
            kind, op, at = self.peek()
            if kind != "op" or op not in self.BINDING or self.BINDING[op] <= floor:
                return left
            self.take()
            left = self.node(op, (left, self.expression(self.BINDING[op])), at=left.at)

    def unary(self) -> Node:
        kind, text, at = self.peek()
        if (kind, text) == ("op", "-"):
            self.take()
            return self.node("neg", (self.unary(),), at=at)
        if (kind, text) == ("op", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        kind, text, at = self.peek()
        if (kind, text) != ("op", "**"):
            return base
        self.take()
        exponent = self.exponent()
        return self.node("**", (base,), exponent, at=base.at)

    def exponent(self) -> str:
        """A number exponent: 2, -1, 0.5, (-1), (1/2) is not a number and is refused."""
        kind, text, at = self.peek()
        sign = ""
        wrapped = (kind, text) == ("op", "(")
        if wrapped:
            self.take()
            kind, text, at = self.peek()
        if (kind, text) == ("op", "-"):
            sign = "-"
            self.take()
            kind, text, at = self.peek()
        if kind != "num":
            found = "the end of the formula" if kind == "end" else f"'{text}'"
            raise FormulaError(f"the exponent after ** must be a number, found {found}", at,
                               "powers take a number exponent (x ** 2, x ** -1, x ** 0.5); "
                               "write exp(y * log(x)) for x to the power y")
        self.take()
        if wrapped:
            self.expect(")", "to close the exponent")
        return sign + text

    def atom(self) -> Node:
        kind, text, at = self.take()
        if kind == "num":
            if not math.isfinite(float(text)):
                raise FormulaError(f"the number {text} is larger than a float holds (about 1.8e308)", at)
            return self.node("num", value=text, at=at)
        if kind == "name":
            if (self.peek()[0], self.peek()[1]) == ("op", "("):
                if text not in FUNCTIONS:
                    raise FormulaError(f"unknown function '{text}'", at, "the functions are " + ", ".join(FUNCTIONS))
                self.take()
                args = [self.expression(0)]
                while (self.peek()[0], self.peek()[1]) == ("op", ","):
                    self.take()
                    args.append(self.expression(0))
                want = FUNCTIONS[text]
                if len(args) != want:
                    raise FormulaError(f"{text} takes {want} argument{'s' if want > 1 else ''}, found {len(args)}",
                                       at)
                self.expect(")", f"to close {text}(")
                return self.node("call", args, text, at=at)
            if text in FUNCTIONS:
                raise FormulaError(f"'{text}' is a function; write {text}(...)", at)
            return self.node("name", value=text, at=at)
        if (kind, text) == ("op", "("):
            inner = self.expression(0)
            self.expect(")", "to close '('")
            return inner
        found = "the end of the formula" if kind == "end" else f"'{text}'"
        raise FormulaError(f"expected a number, a name or '(' here, found {found}", at)


# Deeper formulas are refused: every pass over a tree (values, reverse mode, the rules'
# notation, the renderers) walks it recursively, and no formula written by hand comes near.
MAX_DEPTH = 64


def parse(text: str) -> Node:
    """The tree of a formula, or FormulaError with the column where it went wrong."""
    too_deep = FormulaError(f"the formula nests more than {MAX_DEPTH} operations deep", 0,
                            "split it into several nodes, each naming a part")
    try:
        tree = _Parser(str(text)).parse()
    except RecursionError:
        raise too_deep from None
    level, deepest = [(tree, 1)], 0
    while level:                # breadth first, without recursion
        node, depth = level.pop()
        deepest = max(deepest, depth)
        level += [(arg, depth + 1) for arg in node.args]
    if deepest > MAX_DEPTH:
        raise too_deep
    return tree


# --- number types -----------------------------------------------------------------------
# The math functions of expression graphs, in one place.  `side(u)` says on which side of 0
# a kink's argument is: +1, −1, or 0 when it is 0 on paper (relu′(0) = 0, abs′(0) = 0 and a
# max or min tie splits the gradient in half, as PyTorch's relu, abs and maximum do).


def _sigmoid(z, exp=math.exp):
    # the two forms avoid overflow of exp for large |z|
    if z >= 0:
        return 1 / (1 + exp(-z))
    e = exp(z)
    return e / (1 + e)


class FloatOps:
    """Plain Python floats."""

    def number(self, text: str):
        return float(text)

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def power(self, a, n):
        if a < 0 and not float(n).is_integer():
            raise ValueError("math domain error")      # Python's ** would give a complex number
        return a ** n

    def fn(self, name, a):
        return {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh,
                "sigmoid": _sigmoid}[name](a)

    def side(self, u) -> int:
        return (u > 0) - (u < 0)

    def value(self, a) -> float:
        return a


FLOAT = FloatOps()
EPS = 2.0 ** -52
TINY = 2.0 ** -1074


@dataclass
class Noisy:
    """A float and an interval the value on paper lies in (its noise bound)."""
    v: float
    lo: float
    hi: float


def _lift(x):
    return x if isinstance(x, Noisy) else NOISY.exact(float(x))


# Operators, so that loops written with + − · / (the recurrent layers') run on Noisy values too.
Noisy.__add__ = lambda a, b: NOISY.add(a, _lift(b))
Noisy.__radd__ = lambda a, b: NOISY.add(_lift(b), a)
Noisy.__sub__ = lambda a, b: NOISY.sub(a, _lift(b))
Noisy.__rsub__ = lambda a, b: NOISY.sub(_lift(b), a)
Noisy.__mul__ = lambda a, b: NOISY.mul(a, _lift(b))
Noisy.__rmul__ = lambda a, b: NOISY.mul(_lift(b), a)
Noisy.__truediv__ = lambda a, b: NOISY.div(a, _lift(b))
Noisy.__neg__ = lambda a: NOISY.neg(a)


def apply(name: str, z):
    """exp, log, sqrt, tanh or sigmoid of a float, a Noisy value, a fraction or a formula:
    the one place the layers written with operators (recurrent.py) take their math functions
    from.  A fraction or a formula goes to its number system (numbers.py): exact only where
    rational (NotExact elsewhere), a formula kept a formula, never its float."""
    if isinstance(z, Noisy):
        return NOISY.fn(name, z)
    if isinstance(z, Fraction) or hasattr(z, "expr"):
        from .numbers import system
        return getattr(system("symbolic" if hasattr(z, "expr") else "exact"), name)(z)
    return FLOAT.fn(name, z)


def side(z) -> int:
    """+1, −1, or 0 when z is 0 on paper (within its noise)."""
    return NOISY.side(z) if isinstance(z, Noisy) else FLOAT.side(z)


def radius(value) -> float:
    """How far the value on paper may lie from the float computed (0 for a float)."""
    if isinstance(value, Noisy):
        r = max(value.hi - value.v, value.v - value.lo)
        return r if math.isfinite(r) else math.inf
    return 0.0


def plain(value) -> float:
    return value.v if isinstance(value, Noisy) else value


class NoisyOps(FloatOps):
    """Floats carried with an interval: each operation's interval holds every result its
    operands' intervals allow, widened by the operation's own rounding (one ulp for + − · /,
    two for the library functions).  A kink whose argument's interval holds 0 is taken at 0."""

    @staticmethod
    def _made(v, lo, hi, ulps=1) -> Noisy:
        if math.isnan(lo) or math.isnan(hi):
            lo, hi = -math.inf, math.inf
        widen = ulps * (EPS * max(abs(lo), abs(hi)) + TINY)
        return Noisy(v, min(lo, v) - widen, max(hi, v) + widen)

    def exact(self, v) -> Noisy:
        return Noisy(v, v, v)

    def number(self, text):
        v = float(text)
        # a decimal such as 0.1 has no exact binary value: its conversion is one rounding
        return self.exact(v) if Fraction(text) == Fraction(v) else self._made(v, v, v)

    def add(self, a, b):
        return self._made(a.v + b.v, a.lo + b.lo, a.hi + b.hi)

    def sub(self, a, b):
        return self._made(a.v - b.v, a.lo - b.hi, a.hi - b.lo)

    def mul(self, a, b):
        ends = [x * y for x in (a.lo, a.hi) for y in (b.lo, b.hi) if not (math.isinf(x) and y == 0)
                and not (math.isinf(y) and x == 0)]
        return self._made(a.v * b.v, min(ends, default=0.0), max(ends, default=0.0))

    def div(self, a, b):
        if b.lo <= 0 <= b.hi:
            return Noisy(a.v / b.v, -math.inf, math.inf)
        return self.mul(a, self._made(1 / b.v, 1 / b.hi, 1 / b.lo))

    def neg(self, a):
        return Noisy(-a.v, -a.hi, -a.lo)

    def power(self, a, n):
        v = FLOAT.power(a.v, n)
        if float(n).is_integer():
            k = int(n)
            if k < 0 and a.lo <= 0 <= a.hi:
                return Noisy(v, -math.inf, math.inf)
            ends = [a.lo ** k, a.hi ** k]
            lo, hi = min(ends), max(ends)
            if k % 2 == 0 and a.lo <= 0 <= a.hi:
                lo = 0.0
            return self._made(v, lo, hi, 2)
        if a.lo < 0:
            return Noisy(v, -math.inf, math.inf)
        ends = [a.lo ** n, a.hi ** n] if not (n < 0 and a.lo == 0) else [math.inf, a.hi ** n]
        return self._made(v, min(ends), max(ends), 2)

    def fn(self, name, a):
        f = FLOAT.fn
        v = f(name, a.v)
        if name in ("log", "sqrt") and a.lo <= 0:
            lo = -math.inf if name == "log" else 0.0
            return self._made(v, lo, f(name, a.hi) if a.hi > 0 else v, 2)
        try:
            lo, hi = f(name, a.lo), f(name, a.hi)      # every one of them is increasing
        except OverflowError:
            lo, hi = f(name, a.lo) if a.lo < 700 else math.inf, math.inf
        return self._made(v, lo, hi, 2)

    def side(self, u) -> int:
        if u.lo > 0:
            return 1
        if u.hi < 0:
            return -1
        return 0

    def value(self, a) -> float:
        return a.v


NOISY = NoisyOps()


EXACT_POWER = 1000


class ExactOps(FloatOps):
    """Fractions (`arithmetic: exact`): numbers as written, functions where they are exact."""

    def number(self, text: str):
        return Fraction(text)

    def power(self, a, n):
        # a whole power is exact; past EXACT_POWER the fraction's digits run into the millions
        # (x ** 100000000 would not finish), so it is refused as a power without an exact value
        from .numbers import NotExact
        if not float(n).is_integer():
            raise NotExact("a power", a, f"{float(a):.6g} ** {float(n):g} is not a fraction")
        if abs(n) > EXACT_POWER:
            raise NotExact("a power", a, f"{float(a):.6g} ** {float(n):g} has too many digits to work out exactly "
                                         f"(powers up to {EXACT_POWER} are)")
        return a ** int(n)

    def fn(self, name, a):
        from .numbers import EXACT
        if name == "sigmoid":
            return _sigmoid(a, EXACT.exp)
        return getattr(EXACT, name)(a)


EXACT_OPS = ExactOps()


# --- evaluation and reverse mode --------------------------------------------------------

def _kink(ops, name, args, vals):
    """relu, abs, max, min: the value and each argument's local slope (numbers 1, 0, ½, −1)."""
    if name in ("relu", "abs"):
        u, = vals
        side = ops.side(u)
        if name == "relu":
            return (u if side > 0 else ops.mul(ops.number("0"), u)), [1 if side > 0 else 0]
        return (u if side > 0 else ops.neg(u) if side < 0 else ops.mul(ops.number("0"), u)), [side]
    a, b = vals
    side = ops.side(ops.sub(a, b))
    if side == 0:
        return a, [0.5, 0.5]        # a tie: equal on paper; each gets half, as torch.maximum
    first = side > 0 if name == "max" else side < 0
    return (a if first else b), ([1, 0] if first else [0, 1])


def forward(tree: Node, env: dict, ops=FLOAT) -> dict:
    """Every tree node's value (node id -> value), the formula's own under tree.id, plus each
    kink's slopes under ("slopes", id)."""
    values = {}

    def walk(node):
        kind = node.kind
        if kind == "num":
            result = ops.number(node.value)
        elif kind == "name":
            result = env[node.value]
        else:
            args = [walk(arg) for arg in node.args]
            if kind == "neg":
                result = ops.neg(args[0])
            elif kind == "+":
                result = ops.add(*args)
            elif kind == "-":
                result = ops.sub(*args)
            elif kind == "*":
                result = ops.mul(*args)
            elif kind == "/":
                result = ops.div(*args)
            elif kind == "**":
                result = ops.power(args[0], float(node.value))
            elif node.value in KINKS:
                result, values[("slopes", node.id)] = _kink(ops, node.value, node.args, args)
            else:
                result = ops.fn(node.value, args[0])
        values[node.id] = result
        return result

    walk(tree)
    return values


def gradients(tree: Node, values: dict, ops=FLOAT) -> dict:
    """name -> ∂formula/∂name at the values `forward` found: reverse mode, each tree node
    passing its adjoint times its local derivative to its arguments."""
    grads: dict = {}
    one = ops.number("1")

    def local(node, k):
        """∂node/∂(its k-th argument), from the values already computed."""
        kind, args = node.kind, node.args
        if kind == "neg":
            return ops.neg(one)
        if kind == "+":
            return one
        if kind == "-":
            return one if k == 0 else ops.neg(one)
        if kind == "*":
            return values[args[1 - k].id]
        if kind == "/":
            a, b = values[args[0].id], values[args[1].id]
            return ops.div(one, b) if k == 0 else ops.neg(ops.div(a, ops.mul(b, b)))
        if kind == "**":
            n = float(node.value)
            if n == 0:
                return ops.number("0")      # x⁰ = 1 everywhere, 0⁰ included (torch's pow too)
            return ops.mul(ops.number(node.value), ops.power(values[args[0].id], n - 1))
        name, out, u = node.value, values[node.id], values[args[0].id]
        if name in KINKS:
            slope = values[("slopes", node.id)][k]
            return slope if isinstance(slope, tuple) else ops.number(repr(float(slope)))
        if name == "exp":
            return out
        if name == "log":
            return ops.div(one, u)
        if name == "sqrt":
            return ops.div(one, ops.mul(ops.number("2"), out))
        if name == "sigmoid":
            return ops.mul(out, ops.sub(one, out))
        if name == "tanh":
            return ops.sub(one, ops.mul(out, out))
        raise AssertionError(name)

    def walk(node, adjoint):
        if node.kind == "name":
            grads[node.value] = adjoint if node.value not in grads else ops.add(grads[node.value], adjoint)
            return
        for k, arg in enumerate(node.args):
            walk(arg, ops.mul(adjoint, local(node, k)))

    walk(tree, one)
    return grads


# --- writing a formula back -------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4}
_SHOWN = {"*": "·", "-": "−"}


def text(tree: Node, rename=None, *, latex: bool = False) -> str:
    """The formula written back, with names passed through `rename` (for traced names) and
    only the parentheses it needs."""
    rename = rename or (lambda name: name)

    def show(node, outer=0, right=False):
        kind = node.kind
        if kind == "num":
            return node.value
        if kind == "name":
            return rename(node.value)
        if kind == "call":
            inner = ", ".join(show(arg) for arg in node.args)
            fn = {"sigmoid": r"\sigma", "sqrt": r"\sqrt"}.get(node.value, rf"\operatorname{{{node.value}}}") \
                if latex else ("σ" if node.value == "sigmoid" else node.value)
            if latex and node.value == "sqrt":
                return rf"\sqrt{{{inner}}}"
            return rf"{fn}\left({inner}\right)" if latex else f"{fn}({inner})"
        mine = _PRECEDENCE[kind]
        if kind == "neg":
            result = ("-" if latex else "−") + show(node.args[0], mine)
        elif kind == "**":
            base = show(node.args[0], mine + 1)
            exponent = node.value.replace("-", "−") if not latex else node.value
            result = f"{{{base}}}^{{{exponent}}}" if latex else f"{base}^{exponent}"
        elif kind == "/" and latex:
            return rf"\frac{{{show(node.args[0])}}}{{{show(node.args[1])}}}"
        else:
            op = {"*": r" \cdot ", "-": " - ", "+": " + "}[kind] if latex else f" {_SHOWN.get(kind, kind)} "
            result = show(node.args[0], mine) + op + show(node.args[1], mine, right=True)
        # a negative right operand keeps its parentheses: d · (−1), not d · −1
        needs = mine < outer or (right and mine == outer and kind in "+-*/") or (right and kind == "neg")
        return (r"\left(" + result + r"\right)" if latex else f"({result})") if needs else result

    return show(tree)


class TextOps:
    """Formulas as text: reverse mode run on it writes each local gradient as a formula
    (∂(q·z)/∂q = z, ∂σ(x)/∂x = σ(x)·(1 − σ(x))), with the 1s and 0s a reader would not write
    left out.  A value is (text, precedence)."""

    def __init__(self, rename=None):
        self.rename = rename or (lambda name: name)

    def number(self, text):
        return (text.replace("-", "−"), 5 if not text.startswith("-") else 3)

    def _wrap(self, a, prec):
        return f"({a[0]})" if a[1] < prec else a[0]

    def add(self, a, b):
        if a[0] == "0":
            return b
        if b[0] == "0":
            return a
        if b[0].startswith("−") and b[1] >= 2:
            return (f"{a[0]} − {b[0][1:]}", 1)
        return (f"{a[0]} + {b[0]}", 1)

    def sub(self, a, b):
        if b[0] == "0":
            return a
        return (f"{a[0]} − {self._wrap(b, 2)}", 1)

    def mul(self, a, b):
        for x, y in ((a, b), (b, a)):
            if x[0] == "1":
                return y
            if x[0] == "0":
                return ("0", 5)
            if x[0] == "−1":
                return self.neg(y)
        if a[0].startswith("−") and a[1] == 3:
            return self.neg(self.mul(self.neg(a), b))
        return (f"{self._wrap(a, 2)} · {self._wrap(b, 2)}", 2)

    def div(self, a, b):
        return (f"{self._wrap(a, 2)} / {self._wrap(b, 3)}", 2)

    def neg(self, a):
        if a[0].startswith("−") and a[1] >= 3:
            return (a[0][1:], 5)
        return (f"−{self._wrap(a, 3)}", 3)

    def power(self, a, n):
        shown = f"{n:g}".replace("-", "−")
        if n == 1:
            return a
        if n == 0:
            return ("1", 5)
        return (f"{self._wrap(a, 5)}^{shown}", 4)

    def fn(self, name, a):
        return (f"{'σ' if name == 'sigmoid' else name}({a[0]})", 5)

    def name(self, value):
        return (self.rename(value), 5)

    def call(self, name, args):
        """A kink written as called: relu(u), max(a, b)."""
        return (f"{name}({', '.join(a[0] for a in args)})", 5)

    def indicator(self, a, sign, b):
        """[a > b]: 1 where it holds, else 0."""
        return (f"[{a[0]} {sign} {b[0]}]", 5)

    def sign(self, u):
        return (f"sign({u[0]})", 5)

    def side(self, u):
        return None

    def value(self, a):
        return a[0]


class NotationOps(TextOps):
    """TextOps building bptrace.notation nodes instead of strings: the same formulas (their
    text form is TextOps' text), with the names of traced values as references that LaTeX
    and HTML typeset and link.  A value is (node, precedence)."""

    def number(self, text):
        return (N.sym(text.replace("-", "−")), 5 if not text.startswith("-") else 3)

    def name(self, value):
        return (N.Ref(self.rename(value)), 5)

    def _wrap(self, a, prec):
        return N.Paren(a[0]) if a[1] < prec else a[0]

    @staticmethod
    def _unminus(node):
        """The node without its leading minus sign (`−x` → `x`)."""
        if isinstance(node, N.Seq) and node.parts and node.parts[0] == N.Sym("−"):
            return N.seq(*node.parts[1:])
        if isinstance(node, N.Sym) and node.text.startswith("−"):
            return N.Sym(node.text[1:])
        if isinstance(node, N.Op) and node.terms:
            return N.Op(node.sign, (NotationOps._unminus(node.terms[0]),) + node.terms[1:], node.spaced)
        raise AssertionError(f"no leading minus in {node}")

    def add(self, a, b):
        if _is(a[0], "0"):
            return b
        if _is(b[0], "0"):
            return a
        if _leads_minus(b[0]) and b[1] >= 2:
            return (N.Op("−", (a[0], self._unminus(b[0]))), 1)
        return (N.Op("+", (a[0], b[0])), 1)

    def sub(self, a, b):
        if _is(b[0], "0"):
            return a
        return (N.Op("−", (a[0], self._wrap(b, 2))), 1)

    def mul(self, a, b):
        for x, y in ((a, b), (b, a)):
            if _is(x[0], "1"):
                return y
            if _is(x[0], "0"):
                return (N.sym(0), 5)
            if _is(x[0], "−1"):
                return self.neg(y)
        if _leads_minus(a[0]) and a[1] == 3:
            return self.neg(self.mul(self.neg(a), b))
        return (N.Op("·", (self._wrap(a, 2), self._wrap(b, 2))), 2)

    def div(self, a, b):
        return (N.Frac(self._wrap(a, 2), self._wrap(b, 3), spaced=True), 2)

    def neg(self, a):
        if _leads_minus(a[0]) and a[1] >= 3:
            return (self._unminus(a[0]), 5)
        return (N.Seq((N.Sym("−"), self._wrap(a, 3))), 3)

    def power(self, a, n):
        shown = f"{n:g}".replace("-", "−")
        if n == 1:
            return a
        if n == 0:
            return (N.sym(1), 5)
        return (N.Power(self._wrap(a, 5), shown, caret=True), 4)

    def fn(self, name, a):
        return (N.Func("σ" if name == "sigmoid" else name, a[0]), 5)

    def call(self, name, args):
        return (N.Func(name, N.seq(*N.listed(a[0] for a in args))), 5)

    def indicator(self, a, sign, b):
        return (N.seq(N.sym("["), a[0], N.sym(f" {sign} "), b[0], N.sym("]")), 5)

    def sign(self, u):
        return (N.Func("sign", u[0]), 5)


# The simplifications above ask whether a part is 0, 1 or −1, or starts with a minus.  Writing
# the whole part out to ask made a nested formula's derivative take time cubic in its depth;
# these look only as far as the answer needs.

def _small_text(node, budget: int = 4):
    """The text of a node of at most `budget` leaves (numbers, signs, words), else None."""
    if isinstance(node, (N.Sym, N.Word)):
        return node.text
    if isinstance(node, N.Seq) and len(node.parts) <= budget:
        texts = [_small_text(part, budget - 1) for part in node.parts]
        return None if None in texts else "".join(texts)
    return None


def _is(node, value: str) -> bool:
    """str(node) == value, for a short value (0, 1, −1): a longer node is never one."""
    return _small_text(node) == value


def _leads_minus(node) -> bool:
    """str(node).startswith("−"), from the node's first leaf."""
    while True:
        if isinstance(node, (N.Sym, N.Word, N.Text)):
            return node.text.startswith("−")
        if isinstance(node, N.Op) and node.terms:
            node = node.terms[0]
        elif isinstance(node, N.Seq) and node.parts:
            node = node.parts[0]
        elif isinstance(node, N.Frac):
            node = node.num
        elif isinstance(node, N.Power):
            node = node.base
        elif isinstance(node, N.Eq) and node.sides:
            node = node.sides[0]
        elif isinstance(node, (N.Ref, N.Func, N.Paren, N.Sum)):
            return False            # a name, a function, "(" or Σ first
        else:
            return str(node).startswith("−")


def symbolic_forward(tree: Node, rename=None, ops=None) -> tuple:
    """forward() on text (or notation, with NotationOps): each tree node's formula, kinks'
    slopes written as conditions."""
    ops = ops or TextOps(rename)
    values = {}

    def walk(node):
        if node.kind == "num":
            result = ops.number(node.value)
        elif node.kind == "name":
            result = ops.name(node.value)
        else:
            args = [walk(arg) for arg in node.args]
            kind = node.kind
            if kind == "neg":
                result = ops.neg(args[0])
            elif kind in "+-*/" and len(kind) == 1:
                result = {"+": ops.add, "-": ops.sub, "*": ops.mul, "/": ops.div}[kind](*args)
            elif kind == "**":
                result = ops.power(args[0], float(node.value))
            elif node.value in KINKS:
                result = ops.call(node.value, args)
                if node.value == "relu":
                    slopes = [ops.indicator(args[0], ">", ops.number("0"))]
                elif node.value == "abs":
                    slopes = [ops.sign(args[0])]
                else:
                    a, b = args
                    sign = ">" if node.value == "max" else "<"
                    slopes = [ops.indicator(a, sign, b), ops.indicator(b, sign, a)]
                values[("slopes", node.id)] = slopes
            else:
                result = ops.fn(node.value, args[0])
        values[node.id] = result
        return result

    walk(tree)
    return ops, values


def local_gradient_texts(tree: Node, rename=None) -> dict:
    """name -> ∂formula/∂name written as a formula over the renamed names."""
    ops, values = symbolic_forward(tree, rename)
    return {name: g[0] for name, g in gradients(tree, values, ops).items()}


def local_gradient_rules(tree: Node, rename=None) -> dict:
    """name -> ∂formula/∂name as notation (bptrace.notation), its text that of
    `local_gradient_texts`."""
    ops, values = symbolic_forward(tree, rename, NotationOps(rename))
    return {name: g[0] for name, g in gradients(tree, values, ops).items()}
