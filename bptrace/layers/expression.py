"""A node of an expression graph (`nodes: {q: x + y, f: q * z}`): a formula over the inputs
and earlier nodes, applied element by element.

It is a merge-like layer: it reads every value its formula names (in the order they first
appear), and sends each of them back delta × local gradient, where the local gradient
∂formula/∂value is found by reverse mode over the parsed formula (bptrace.formula) and
traced as `f.local.q` during the forward pass, the way the course notes draw a circuit
"gate by gate": the local gradients are known once the forward values are, and the
backward pass only multiplies them by the delta arriving from above.  A value read by two
nodes gets the sum of both parts from the engine, as any value read twice.
"""
from __future__ import annotations

import math

import numpy as np

from .. import formula as F
from ..errors import ScenarioError
from ..notation import Formula, Ref, eq, partial, prod, sym
from ..numbers import NotExact, exact_text
from .base import EPS, TINY, Layer, Names, as_array, nested, noise_bound


def _shown(value) -> str:
    """An input's value in an error message: a float shortly, an exact number whole (a
    Fraction has no 'g' format before Python 3.12)."""
    return format(value, "g") if isinstance(value, float) else exact_text(value)


class Expression(Layer):
    """out = the node's formula of the values it reads, element by element."""
    type = "expression"
    merge = True
    # Its kinks (relu, abs, max, min) decide on float noise, and its local gradients carry
    # the noise of every value read: the engine hands it the bounds of each (`floor`).
    decides = True
    in_delta_reads = ("delta",)

    def __init__(self, name, tree, reads, shape, text=""):
        super().__init__(name, shape)
        self.tree, self.reads, self.text = tree, tuple(reads), text
        self.in_shapes = tuple(tuple(shape) for _ in reads)
        self.extras = tuple(f"local.{r}" for r in reads)
        self.extra_shapes = {extra: tuple(shape) for extra in self.extras}
        self.ops = F.NOISY          # the number type of the loops: floats with their noise intervals
        self._locals = {}           # local gradients as traced (rounded, given), for backward
        self._local_noise = {}

    def use(self, num):
        super().use(num)
        if num.exact:
            # fractions, or (symbolic) the system's own formula operations
            self.ops = getattr(num, "formula_ops", F.EXACT_OPS)

    def multiply_adds(self) -> int:
        return 12 * math.prod(self.out_shape) * max(self.tree.id, 1)

    def noise_terms(self) -> int:
        return 2

    def _elements(self, xs, bounds):
        """Run the formula and its reverse mode on every element: (values, noise) for the
        output and for each local gradient, flat."""
        ops = self.ops
        flat = [x.reshape(-1).tolist() for x in xs]
        bounds = [[0.0] * len(flat[0]) if b is None else np.reshape(b, -1).tolist() for b in bounds]
        out, out_noise = [], []
        local = {r: [] for r in self.reads}
        local_noise = {r: [] for r in self.reads}
        for k in range(len(flat[0])):
            env = {r: flat[j][k] if self.num.exact else
                   F.Noisy(flat[j][k], flat[j][k] - bounds[j][k], flat[j][k] + bounds[j][k])
                   for j, r in enumerate(self.reads)}
            try:
                values = F.forward(self.tree, env, ops)
                grads = F.gradients(self.tree, values, ops)
            except NotExact:
                raise
            except (ArithmeticError, ValueError) as error:
                raise self._domain_error(error, k, env) from None
            result = values[self.tree.id]
            out.append(ops.value(result))
            out_noise.append(_radius(result))
            for r in self.reads:
                local[r].append(ops.value(grads[r]))
                local_noise[r].append(_radius(grads[r]))
        return out, out_noise, local, local_noise

    def _domain_error(self, error, k, env) -> ScenarioError:
        """1/0, log of a negative number, exp past the float range: a located message."""
        at = np.unravel_index(k, self.out_shape)
        where = "" if math.prod(self.out_shape) == 1 else f" at element {list(int(a) for a in at)}"
        values = ", ".join(f"{name} = {_shown(F.plain(v))}" for name, v in env.items())
        reason = "divides by zero" if isinstance(error, ZeroDivisionError) else \
            "leaves the float range" if isinstance(error, OverflowError) else "takes a function outside its domain"
        return ScenarioError(f"node {self.name} ({self.text}) {reason}{where}, with {values}",
                             key=f"nodes.{self.name}", hint="change the inputs or the formula")

    def forward(self, xs, p, recs, stage=None):
        rec = recs.get("out") if isinstance(recs, dict) else recs
        floors = self.floor if isinstance(self.floor, list) else [None] * len(xs)
        out, _, local, local_noise = self._elements(xs, floors)
        shape = self.out_shape
        if rec:
            self._record(rec, xs)
        self._locals, self._local_noise = {}, {}
        for r in self.reads:
            values = self.num.array(local[r]).reshape(shape)
            noise = as_array(local_noise[r]).reshape(shape)
            if stage:
                values = stage(f"local.{r}", values, reads=tuple(f"in{j}" for j in range(len(xs))), noise=noise)
            self._locals[r], self._local_noise[r] = values, noise
        return self.num.array(out).reshape(shape)

    def _record(self, rec, xs):
        """A formula that is a sum of products of the values read (x + y, q · z, w0·x0 + w1·x1
        + w2) is written out term by term; others show their value."""
        terms = _sum_of_products(self.tree)
        if terms is None:
            return
        where = {r: j for j, r in enumerate(self.reads)}
        for idx in np.ndindex(*self.out_shape):
            for constant, factors in terms:
                parts = [(f"in{where[r]}", idx, xs[where[r]][idx]) for r in factors]
                if constant != 1 or not parts:
                    parts.insert(0, (f"{constant:g}".replace("-", "−"), None, constant))
                rec.term(idx, *parts)

    def backward(self, xs, out, delta, p, recs, stage=None):
        # the local gradients as the forward pass kept them (rounded, given)
        kept = getattr(stage, "values", None) or {}
        deltas = []
        flat_delta = delta.reshape(-1).tolist()
        for j, r in enumerate(self.reads):
            local = np.asarray(kept.get(f"local.{r}", self._locals[r])).reshape(-1).tolist()
            sent = nested((len(local),))
            rec = recs["in"][j]
            for k, (d, slope) in enumerate(zip(flat_delta, local)):
                sent[k] = d * slope
                if rec:
                    at = tuple(int(a) for a in np.unravel_index(k, self.out_shape))
                    rec.term(at, ("delta", at, d), (f"local.{r}", at, slope))
            deltas.append(self.num.array(sent).reshape(self.out_shape))
        return {"in": deltas}

    def forward_noise(self, xs, p, out, noise: dict):
        # a number as written is exact on paper, but its float is up to half an ulp off it,
        # which a cancelling difference (4.2 − 4.1666666666666667) makes large next to the
        # result: the interval starts from the float ± that half ulp
        _, out_noise, _, _ = self._elements(xs, [noise[f"in{j}"] + EPS * np.abs(x) for j, x in enumerate(xs)])
        return as_array(out_noise).reshape(self.out_shape)

    def backward_noise(self, xs, out, delta, p, noise: dict) -> dict:
        """delta × local: both factors' bounds carried (the local gradient's from the
        interval run of the forward pass), plus the product's rounding."""
        sent = []
        for r in self.reads:
            local, e_local = np.abs(self._locals[r]), self._local_noise[r]
            grown = (np.abs(delta) + noise["delta"]) * (local + e_local)
            sent.append(noise_bound(grown, np.abs(delta) * local, 1))
        return {"in": sent}

    def roles(self, n: Names) -> dict:
        roles = {"out": n.out, "delta": n.delta}
        roles.update({f"in{k}": x for k, x in enumerate(n.xs)})
        roles.update({f"local.{r}": n.extra(f"local.{r}") for r in self.reads})
        return roles

    def rules(self, n: Names) -> dict:
        traced = dict(zip(self.reads, n.xs))
        rename = traced.get
        rules = {"out": eq(Ref(n.out), Formula(self.tree, tuple(traced.items())))}
        gradients = F.local_gradient_rules(self.tree, rename)
        for k, r in enumerate(self.reads):
            local = Ref(n.extra("local." + r))
            rules[f"local.{r}"] = eq(local, partial(sym(n.layer), sym(r)), gradients[r])
            rules[f"in{k}"] = eq(Ref(n.x_deltas[k]), prod(Ref(n.delta), local))
        return rules


def _radius(value) -> float:
    """How far the value on paper may lie from the float computed (inf: unbounded)."""
    if isinstance(value, F.Noisy):
        radius = max(value.hi - value.v, value.v - value.lo)
        return radius if math.isfinite(radius) else math.inf
    return 0.0


def _sum_of_products(tree) -> list | None:
    """[(constant, [names])] when the formula is a sum of products of names and numbers."""
    def product(node, sign):
        if node.kind == "neg":
            return product(node.args[0], -sign)
        if node.kind == "*":
            left, right = product(node.args[0], sign), product(node.args[1], 1)
            if left is None or right is None:
                return None
            return (left[0] * right[0], left[1] + right[1])
        if node.kind == "name":
            return (sign, [node.value])
        if node.kind == "num":
            return (sign * float(node.value), [])
        return None

    def total(node, sign):
        if node.kind in ("+", "-"):
            left = total(node.args[0], sign)
            right = total(node.args[1], sign if node.kind == "+" else -sign)
            return None if left is None or right is None else left + right
        term = product(node, sign)
        return None if term is None else [term]

    return total(tree, 1)


__all__ = ["EPS", "TINY", "Expression"]
