"""Layers that read several values (`from: [a, b, ...]`): add, multiply, concat.

They are where a graph joins again: a residual block's `add` reads the block's input a
second time, so that value's delta is the sum of two contributions (the engine adds them;
see `bptrace.plan`).  Forward gets the list of values read, in the order `from` names them;
backward returns the error at each of them as a list, in the same order.
"""
from __future__ import annotations

import math

import numpy as np

from ..notation import Ref, add, eq, partial, prod, seq
from ..spec import Spec, shape_words
from .base import (
    BuildContext,
    Layer,
    Names,
    add_up,
    noise_bound,
    recording,
    ref,
)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _canonical_words(shape) -> str:
    """A canonical shape said in full, with the axes a squeezed one hides: 1 sample, 1 map of 2×2."""
    if len(shape) == 2:
        return f"{_plural(shape[0], 'sample')} of {_plural(shape[1], 'feature')}"
    if len(shape) >= 3:
        return f"{_plural(shape[0], 'sample')}, {_plural(shape[1], 'map')} of {'×'.join(map(str, shape[2:]))}"
    return "×".join(map(str, shape))


class Merge(Layer):
    merge = True
    in_delta_reads = ("delta",)

    @classmethod
    def build(cls, name: str, spec: Spec, ctx: BuildContext) -> "Layer":
        if len(ctx.in_shapes) < 2:
            raise spec.error("from" if "from" in spec else "type",
                             f"{cls.type} reads at least two values; found {len(ctx.in_shapes)}",
                             f"write `from: [a, b]` with the names of the layers (or inputs) it {cls.verb}")
        layer = cls(name, ctx.in_shapes[0])
        layer.in_shapes = tuple(ctx.in_shapes)
        layer.out_shape = layer.merged_shape(spec, ctx)
        return layer

    verb = "merges"

    def merged_shape(self, spec: Spec, ctx: BuildContext) -> tuple:
        """Element-wise merges need one shape everywhere."""
        first = ctx.in_shapes[0]
        for k, shape in enumerate(ctx.in_shapes[1:], start=1):
            if shape != first:
                words = [shape_words(first), shape_words(shape)]
                hint = "merge values of the same shape (add a conv or pool on one branch)"
                if words[0] == words[1]:
                    # both show alike (a 2×2 map and 2 samples of 2 features): say what each is
                    words = [_canonical_words(first), _canonical_words(shape)]
                    hint = ("one is a map, the other feature vectors: a 1-D or 2-D input that no conv reads "
                            "is feature vectors; write a map with its channel axis, [[[...]]]")
                raise spec.error("from", f"{self.type} needs values of one shape; {ctx.sources[0]} makes "
                                         f"{words[0]} but {ctx.sources[k]} makes {words[1]}", hint)
        return tuple(first)

    def multiply_adds(self) -> int:
        return 3 * math.prod(self.out_shape) * len(self.in_shapes)

    def noise_terms(self) -> int:
        return len(self.in_shapes)

    # The same loops on magnitudes, as for the other layers (see Layer.forward_noise), with
    # one bound per value read.
    def forward_noise(self, xs, p, out, noise: dict):
        grown = self.forward([abs(x) + noise[f"in{k}"] for k, x in enumerate(xs)], p, None)
        plain = self.forward([abs(x) for x in xs], p, None)
        return noise_bound(grown, plain, self.noise_terms())

    def backward_noise(self, xs, out, delta, p, noise: dict) -> dict:
        recs = {"in": [None] * len(xs)}
        grown = self.backward([abs(x) + noise[f"in{k}"] for k, x in enumerate(xs)], abs(out) + noise["out"],
                              abs(delta) + noise["delta"], p, recs)
        plain = self.backward([abs(x) for x in xs], abs(out), abs(delta), p, recs)
        return {"in": [noise_bound(g, q, self.noise_terms()) for g, q in zip(grown["in"], plain["in"])]}

    def roles(self, n: Names) -> dict:
        roles = {"out": n.out, "delta": n.delta}
        roles.update({f"in{k}": x for k, x in enumerate(n.xs)})
        return roles

    def _operands(self, n: Names) -> list:
        # a value read twice (`from: [a, a]`) is still one name in the rule
        return [ref(x, shape, "ncij"[:len(shape)] if len(shape) == 4 else "nk")
                for x, shape in zip(n.xs, self.in_shapes)]


class Add(Merge):
    """out = x₀ + x₁ + ... element by element (a residual block's skip connection).
    Backward: every value read gets the whole delta (∂out/∂x_k = 1)."""
    type = "add"
    verb = "adds"

    def forward(self, xs, p, rec):
        # x₀ + x₁ + ... at each element, added in turn from 0
        out = [add_up(values) for values in zip(*(x.reshape(-1).tolist() for x in xs))]
        for idx in recording(rec, np.ndindex(*self.out_shape)):
            for k, x in enumerate(xs):
                rec.term(idx, (f"in{k}", idx, x[idx]))
        return self.num.array(out).reshape(self.out_shape)

    def backward(self, xs, out, delta, p, recs):
        deltas = [self.num.zeros(shape) for shape in self.in_shapes]
        for idx in np.ndindex(*self.out_shape):
            for k in range(len(xs)):
                deltas[k][idx] = delta[idx]
                if recs["in"][k]:
                    recs["in"][k].term(idx, ("delta", idx, delta[idx]))
        return {"in": deltas}

    def rules(self, n):
        letters = "ncij" if len(self.out_shape) == 4 else "nk"
        out = ref(n.out, self.out_shape, letters)
        return {"out": eq(out, add(*self._operands(n))),
                **{f"in{k}": eq(ref(d, shape, letters),
                                seq(ref(n.delta, self.out_shape, letters), "  (",
                                    eq(partial(Ref(n.out), Ref(x)), 1), ")"))
                   for k, (x, d, shape) in enumerate(zip(n.xs, n.x_deltas, self.in_shapes))}}


class Multiply(Merge):
    """out = x₀ · x₁ · ... element by element (a gate).  Backward: the error at x_k is the
    delta times the product of the OTHER values read (∂(a·b)/∂a = b)."""
    type = "multiply"
    verb = "multiplies"

    def in_delta_names(self, roles, k=0):
        others = [roles[f"in{j}"] for j in range(len(self.in_shapes)) if j != k]
        return tuple(dict.fromkeys([roles["delta"]] + others))

    def forward(self, xs, p, rec):
        out = self.num.zeros(self.out_shape)
        for idx in np.ndindex(*self.out_shape):
            product = 1
            for x in xs:
                product *= x[idx]
            out[idx] = product
            if rec:
                rec.term(idx, *((f"in{k}", idx, x[idx]) for k, x in enumerate(xs)))
        return out

    def backward(self, xs, out, delta, p, recs):
        deltas = [self.num.zeros(shape) for shape in self.in_shapes]
        for idx in np.ndindex(*self.out_shape):
            for k in range(len(xs)):
                others = 1
                for j, x in enumerate(xs):
                    if j != k:
                        others *= x[idx]
                deltas[k][idx] = delta[idx] * others
                if recs["in"][k]:
                    recs["in"][k].term(idx, ("delta", idx, delta[idx]),
                                       *((f"in{j}", idx, x[idx]) for j, x in enumerate(xs) if j != k))
        return {"in": deltas}

    def rules(self, n):
        letters = "ncij" if len(self.out_shape) == 4 else "nk"
        operands = self._operands(n)
        out = ref(n.out, self.out_shape, letters)
        rules = {"out": eq(out, prod(*operands))}
        for k, (d, shape) in enumerate(zip(n.x_deltas, self.in_shapes)):
            others = [x for j, x in enumerate(operands) if j != k]
            rules[f"in{k}"] = eq(ref(d, shape, letters), prod(ref(n.delta, self.out_shape, letters), *others))
        return rules


class Concat(Merge):
    """out = the values read, one after another along the channel axis (maps) or the feature
    axis (dense values), as torch.cat(dim=1).  Backward: each value gets its own slice of the
    delta back."""
    type = "concat"
    keys = frozenset({"axis"})
    verb = "joins"

    def merged_shape(self, spec, ctx):
        first = ctx.in_shapes[0]
        axis_name = "channels" if len(first) == 4 else "features"
        written = spec.choice("axis", ("channels", "features"), axis_name)
        if written != axis_name:
            raise spec.error("axis", f"concat joins {'feature maps' if len(first) == 4 else 'feature vectors'} "
                                     f"along their {axis_name}, not their {written}", f"write `axis: {axis_name}`")
        self.axis_name = axis_name
        for k, shape in enumerate(ctx.in_shapes[1:], start=1):
            if len(shape) != len(first) or shape[0] != first[0] or shape[2:] != first[2:]:
                raise spec.error("from", f"concat needs values that differ only in their {axis_name}; "
                                         f"{ctx.sources[0]} makes {shape_words(first)} but {ctx.sources[k]} "
                                         f"makes {shape_words(shape)}")
        self.offsets = []
        total = 0
        for shape in ctx.in_shapes:
            self.offsets.append(total)
            total += shape[1]
        return (first[0], total) + tuple(first[2:])

    def forward(self, xs, p, rec):
        out = self.num.zeros(self.out_shape)
        for k, x in enumerate(xs):
            for idx in np.ndindex(*x.shape):
                at = (idx[0], idx[1] + self.offsets[k]) + idx[2:]
                out[at] = x[idx]
                if rec:
                    rec.term(at, (f"in{k}", idx, x[idx]))
        return out

    def backward(self, xs, out, delta, p, recs):
        deltas = []
        for k, x in enumerate(xs):
            d = self.num.zeros(x.shape)
            for idx in np.ndindex(*x.shape):
                at = (idx[0], idx[1] + self.offsets[k]) + idx[2:]
                d[idx] = delta[at]
                if recs["in"][k]:
                    recs["in"][k].term(idx, ("delta", at, delta[at]))
            deltas.append(d)
        return {"in": deltas}

    def rules(self, n):
        letters = "ncij" if len(self.out_shape) == 4 else "nk"
        axis = letters[1]
        parts = []
        for x, offset in zip(n.xs, self.offsets):
            parts += [", "] * bool(parts) + [Ref(x), f" ({axis} from {offset + n.base})"]
        rules = {"out": eq(Ref(n.out), seq(*parts, f" joined along the {self.axis_name}"))}
        for k, (d, shape) in enumerate(zip(n.x_deltas, self.in_shapes)):
            # the element of the delta that this value's element became
            shifted = f"{axis}+{self.offsets[k]}" if self.offsets[k] else axis
            rules[f"in{k}"] = eq(ref(d, shape, letters),
                                 ref(n.delta, self.out_shape, [shifted if a == axis else a for a in letters]))
        return rules
