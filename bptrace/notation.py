"""Rules as structured notation: what each layer, loss and optimizer writes as its rule, as
plain data that every format renders in its own way.

A rule such as `c1.out[i,j] = Σ_u Σ_v c1.kernel[u,v] · input[i+u,j+v] + c1.bias` is built
as Eq(Ref("c1.out", ("i","j")), Op("+", (Sum(("u","v"), Op("·", (...))), Ref("c1.bias"))));
`text()` (also `str()`) writes it in Unicode, the one form of the terminal, the JSON
export's `rule` and the checker; `render/latex.py` and `render/html.py` walk the same tree
(names upright and linked to their steps, Σ with its subscripts), so no format reads a
rule back from its text.

Nodes: Ref (a traced name, with its indices), Sym (a math atom: a letter, a number, an
index expression), Word (an operator name: exp, max, log), Text (prose), Sum, Op (terms
joined by +, −, ·, ⊙, /), Func (f(x)), Paren, Frac, Power, Eq, Seq (pieces one after
another).  A plain str given where a node is expected is prose (Text).
"""
from __future__ import annotations

from dataclasses import dataclass

SUPERSCRIPTS = dict(zip("0123456789−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))


class Node:
    def __str__(self) -> str:
        return text(self)

    @property
    def rhs(self) -> "Node":
        """What the rule says its value is (for an Eq, everything after the first `=`)."""
        return self


@dataclass(frozen=True, eq=True)
class Ref(Node):
    name: str
    index: tuple = ()          # index expressions as written (`i`, `2i+u−1`); () for the name alone



@dataclass(frozen=True, eq=True)
class Sym(Node):
    text: str                  # a letter, a number, an index expression: math, as written


@dataclass(frozen=True, eq=True)
class Word(Node):
    text: str                  # an operator's name in math: exp, max, running_mean


@dataclass(frozen=True, eq=True)
class Text(Node):
    text: str                  # prose


@dataclass(frozen=True, eq=True)
class Sum(Node):
    letters: tuple             # Σ_i Σ_j …; () for a bare Σ
    body: Node


@dataclass(frozen=True, eq=True)
class Op(Node):
    sign: str                  # "+", "−", "·", "⊙", "/"
    terms: tuple
    spaced: bool = True        # `a · b` or `a·b`


@dataclass(frozen=True, eq=True)
class Func(Node):
    name: str                  # σ, exp, tanh, √ (√ without parentheses when `bare`)
    arg: Node
    bare: bool = False


@dataclass(frozen=True, eq=True)
class Paren(Node):
    body: Node


@dataclass(frozen=True, eq=True)
class Frac(Node):
    num: Node
    den: Node
    spaced: bool = False       # `a / b` or `a/b`


@dataclass(frozen=True, eq=True)
class Power(Node):
    base: Node
    exp: str                   # `2` (written ²) or `(−3/2)` (written ^(−3/2))
    caret: bool = False        # written base^exp even where a superscript would do (0.9^1)


@dataclass(frozen=True, eq=True)
class Eq(Node):
    sides: tuple

    @property
    def rhs(self) -> Node:
        rest = self.sides[1:]
        return rest[0] if len(rest) == 1 else Eq(rest)

    @property
    def lhs(self) -> Node:
        return self.sides[0]


@dataclass(frozen=True, eq=True)
class Seq(Node):
    parts: tuple


@dataclass(frozen=True, eq=True)
class Formula(Node):
    """A formula of an expression graph's node (bptrace.formula's tree), its names the
    traced names of the values it reads: `names` pairs (name in the formula, traced name)."""
    tree: object
    names: tuple


# --- builders ------------------------------------------------------------------------------

def node(value) -> Node:
    """A node as it is, a number as a math atom, a str as prose."""
    if isinstance(value, Node):
        return value
    if isinstance(value, (int, float)):
        return Sym(str(value))
    return Text(str(value))


def seq(*parts) -> Node:
    """Pieces one after another (a formula, then a remark in prose); "" pieces dropped."""
    parts = tuple(node(p) for p in parts if p != "")
    return parts[0] if len(parts) == 1 else Seq(parts)


def eq(*sides) -> Eq:
    return Eq(tuple(node(s) for s in sides))


def op(sign: str, *terms, spaced: bool = True) -> Node:
    terms = tuple(node(t) for t in terms)
    return terms[0] if len(terms) == 1 else Op(sign, terms, spaced)


def add(*terms) -> Node:
    return op("+", *terms)


def sub(*terms) -> Node:
    return op("−", *terms)


def prod(*terms, spaced: bool = True) -> Node:
    return op("·", *terms, spaced=spaced)


def juxt(*terms, space: str = "") -> Node:
    """Terms written side by side, a product without a sign: `(1/4) Σ x`, `2(x − mean)`."""
    return op(space, *terms, spaced=False)


def had(*terms) -> Node:
    """The element-wise (Hadamard) product ⊙."""
    return op("⊙", *terms)


def func(name: str, arg) -> Func:
    return Func(name, node(arg))


def partial(of, by) -> Frac:
    """∂of/∂by."""
    return Frac(Seq((Sym("∂"), node(of))), Seq((Sym("∂"), node(by))))


def transposed(value) -> Node:
    """Aᵀ."""
    return Seq((node(value), Sym("ᵀ")))


def listed(items) -> list:
    """`a, b, c`: the items with commas between, as pieces for seq()."""
    out = []
    for item in items:
        out += [", "] * bool(out) + [item]
    return out


def sym(value) -> Sym:
    return Sym(str(value))


# --- the text form -------------------------------------------------------------------------

def text(n, inner=None, escape=None) -> str:
    """The rule in Unicode, as the terminal, the JSON export and the checker write it.

    `inner` renders the children and `escape` the signs and words this node writes itself,
    so that a format (HTML) writes the same words with its own leaves (links)."""
    if isinstance(n, str):
        return n
    inner = inner or text
    esc = escape or (lambda value: value)
    if isinstance(n, Ref):
        return esc(f"{n.name}[{','.join(n.index)}]" if n.index else n.name)
    if isinstance(n, (Sym, Word, Text)):
        return esc(n.text)
    if isinstance(n, Sum):
        return esc("".join(f"Σ_{letter} " for letter in n.letters) or "Σ ") + inner(n.body)
    if isinstance(n, Op):
        return esc(f" {n.sign} " if n.spaced else n.sign).join(inner(t) for t in n.terms)
    if isinstance(n, Func):
        return esc(n.name) + (inner(n.arg) if n.bare else esc("(") + inner(n.arg) + esc(")"))
    if isinstance(n, Paren):
        return esc("(") + inner(n.body) + esc(")")
    if isinstance(n, Frac):
        return inner(n.num) + esc(" / " if n.spaced else "/") + inner(n.den)
    if isinstance(n, Power):
        if not n.caret and all(c in SUPERSCRIPTS for c in n.exp):
            return inner(n.base) + esc("".join(SUPERSCRIPTS[c] for c in n.exp))
        return inner(n.base) + esc(f"^{n.exp}")
    if isinstance(n, Eq):
        return esc(" = ").join(inner(side) for side in n.sides)
    if isinstance(n, Seq):
        return "".join(inner(p) for p in n.parts)
    if isinstance(n, Formula):
        from .formula import text as formula_text
        return esc(formula_text(n.tree, dict(n.names).get))
    raise TypeError(f"not a notation node: {n!r}")


def names(n) -> list:
    """The traced names a rule refers to, in order (for links and tests)."""
    found = []

    def walk(x):
        if isinstance(x, Ref):
            found.append(x.name)
        for child in children(x):
            walk(child)
    walk(n)
    return found + ([traced for _, traced in n.names] if isinstance(n, Formula) else [])


def children(n) -> tuple:
    if isinstance(n, Sum):
        return (n.body,)
    if isinstance(n, Op):
        return n.terms
    if isinstance(n, Func):
        return (n.arg,)
    if isinstance(n, Paren):
        return (n.body,)
    if isinstance(n, Frac):
        return (n.num, n.den)
    if isinstance(n, Power):
        return (n.base,)
    if isinstance(n, Eq):
        return n.sides
    if isinstance(n, Seq):
        return n.parts
    return ()
