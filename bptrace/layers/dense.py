"""Flatten and dense (fully connected) layers."""
from __future__ import annotations

from itertools import product
from operator import mul

import numpy as np

from ..notation import add, eq, prod, seq
from .base import (
    Layer,
    _bias,
    _makes,
    _need_map,
    _parameter,
    _set_bias,
    add_up,
    nested,
    ref,
    sums,
)


class Flatten(Layer):
    """Row order (C order, as PyTorch): position c·H·W + i·W + j.  Column order (Zhang 2016
    eq. 10, MATLAB): each map scanned column by column, position c·H·W + j·H + i."""
    type = "flatten"

    @classmethod
    def build(cls, name, spec, ctx):
        _need_map(spec, ctx, "flatten")
        layer = cls(name, ctx.in_shape)
        layer.column = ctx.conventions.flatten == "column"
        N, C, H, W = ctx.in_shape
        layer.out_shape = (N, C * H * W)
        return layer

    def position(self, c, i, j):
        _, _, H, W = self.in_shape
        return c * H * W + (j * H + i if self.column else i * W + j)

    def forward(self, x, p, rec):
        x = x.tolist()
        out = nested(self.out_shape)
        for n, c, i, j in np.ndindex(*self.in_shape):
            k = self.position(c, i, j)
            out[n][k] = x[n][c][i][j]
            if rec:
                rec.term((n, k), ("in", (n, c, i, j), x[n][c][i][j]))
        return self.num.array(out)

    def backward(self, x, out, delta, p, recs):
        delta = delta.tolist()
        x_delta = nested(self.in_shape)
        rec = recs["in"]
        for n, c, i, j in np.ndindex(*self.in_shape):
            k = self.position(c, i, j)
            x_delta[n][c][i][j] = delta[n][k]
            if rec:
                rec.term((n, c, i, j), ("delta", (n, k), delta[n][k]))
        return {"in": self.num.array(x_delta)}

    def rules(self, n):
        N, C, H, W = self.in_shape
        order = "column by column" if self.column else "row by row"
        # axes from most to least significant, with how far one step along each moves
        axes = [("c", C, H * W)] + ([("j", W, H), ("i", H, 1)] if self.column else [("i", H, W), ("j", W, 1)])
        kept = [(letter, step) for letter, size, step in axes if size > 1]
        parts = []
        for k, (letter, step) in enumerate(kept):
            last = k == len(kept) - 1
            # counting from 1, every index but the last gives up its 1; the last keeps it for the position
            term = f"({letter}−1)" if n.base and not last else letter
            parts.append(term if step == 1 else f"{term}·{step}")
        at = " + ".join(parts) or str(n.base)
        flat = ref(n.out, self.out_shape, ("n", at))
        cell = ref(n.x, self.in_shape, "ncij")
        return {
            "out": eq(flat, seq(cell, f"  (each map {order}{', maps one after another' if C > 1 else ''})")),
            "in": eq(ref(n.x_delta, self.in_shape, "ncij"),
                     seq(ref(n.delta, self.out_shape, ("n", at)), "  (the same order, undone)")),
        }


class Dense(Layer):
    """out[n,o] = Σ_k weights[o,k] · x[n,k] + bias[o].  Backward: x.delta = weightsᵀ·delta
    (Zhang eq. 30), grad.weights = delta·xᵀ summed over the batch (eq. 19), grad.bias =
    delta summed over the batch (eq. 24).  `bias: false`: no bias at all (bias=False)."""
    type = "dense"
    keys = frozenset({"weights", "bias", "out"})
    param_roles = ("weights", "bias")
    in_delta_reads = ("delta", "weights")

    @classmethod
    def build(cls, name, spec, ctx):
        if len(ctx.in_shape) != 2:
            _, C, H, W = ctx.in_shape
            raise spec.error("type", f"dense needs a vector of features, but {ctx.previous} makes "
                                     f"a {C}×{H}×{W} feature map", "put a `{type: flatten}` layer before it")
        layer = cls(name, ctx.in_shape)
        N, F = ctx.in_shape
        if "weights" in spec:
            # a fill that leaves out its shape takes [out][in]
            fill_shape = (spec.integer("out", minimum=1), F) if "out" in spec else None
            written = spec.tensor("weights", what="the weights", shape=fill_shape)
            if written.ndim == 1:
                shape = (1, written.shape[0])
            elif written.ndim == 2:
                shape = written.shape
            else:
                found = "a single number" if written.ndim == 0 else f"{written.ndim} nested levels"
                raise spec.error("weights", f"weights are written [out][in]; found {found}")
            if shape[1] != F:
                raise spec.error("weights", f"dense {name} expects {shape[1]} input{'s' * (shape[1] != 1)}; "
                                            + _makes(ctx, f"{F}"),
                                 f"weights are written [out][in]: each row needs {F} number{'s' * (F != 1)}")
            if "out" in spec and spec.integer("out", minimum=1) != shape[0]:
                raise spec.error("out", f"out is {spec.get('out')}, but the weights have {shape[0]} "
                                        f"row{'s' * (shape[0] != 1)}", "leave out `out` when the weights are written")
        elif "out" in spec:
            shape = (spec.integer("out", minimum=1), F)
        else:
            raise spec.error(None, "a dense layer needs `weights`, or `out` (its width) with `init`")
        layer.params["weights"] = _parameter(spec, "weights", shape, ctx, (F, shape[0]), "the weights")
        _set_bias(layer, _bias(spec, shape[0], "the bias", " (one per output)"))
        layer.out_shape = (N, shape[0])
        return layer

    def multiply_adds(self):
        return 3 * int(np.prod(self.out_shape)) * self.in_shape[1]

    def noise_terms(self):
        (N, O), F = self.out_shape, self.in_shape[1]
        return max(F + 1, N, O)

    def forward(self, x, p, rec):
        x, weights = x.tolist(), p["weights"].tolist()
        bias = p["bias"].tolist() if "bias" in p else None
        out = nested(self.out_shape)
        for n, o in product(range(self.out_shape[0]), range(self.out_shape[1])):
            # Σ_k weights[o,k] · x[n,k]: the products added in turn, from 0
            total = add_up(map(mul, weights[o], x[n]))
            if rec:
                for k in range(self.in_shape[1]):
                    rec.term((n, o), ("weights", (o, k), weights[o][k]), ("in", (n, k), x[n][k]))
            if bias is not None:
                total += bias[o]
                if rec:
                    rec.term((n, o), ("bias", (o,), bias[o]))
            out[n][o] = total
        return self.num.array(out)

    def backward(self, x, out, delta, p, recs):
        N, O = self.out_shape
        F = self.in_shape[1]
        x, weights, delta = x.tolist(), p["weights"].tolist(), delta.tolist()
        # columns: x[·,k] over the samples, delta[·,o] over the samples, weights[·,k] over the outputs
        x_k, delta_o, weights_k = list(zip(*x)), list(zip(*delta)), list(zip(*weights))
        rw, rb, rx = recs["weights"], recs.get("bias"), recs["in"]
        # Σ_n delta[n,o] · x[n,k]
        weights_grad = [[add_up(map(mul, delta_o[o], x_k[k])) for k in range(F)] for o in range(O)]
        # Σ_o weights[o,k] · delta[n,o]
        x_delta = [[add_up(map(mul, weights_k[k], delta[n])) for k in range(F)] for n in range(N)]
        if rw or rx:
            for n, o, k in product(range(N), range(O), range(F)):
                if rw:
                    rw.term((o, k), ("delta", (n, o), delta[n][o]), ("in", (n, k), x[n][k]))
                if rx:
                    rx.term((n, k), ("weights", (o, k), weights[o][k]), ("delta", (n, o), delta[n][o]))
        result = {"in": self.num.array(x_delta), "weights": self.num.array(weights_grad)}
        if "bias" in p:
            # Σ_n delta[n,o]
            result["bias"] = self.num.array([add_up(delta_o[o]) for o in range(O)])
            if rb:
                for n, o in product(range(N), range(O)):
                    rb.term((o,), ("delta", (n, o), delta[n][o]))
        return result

    def rules(self, n):
        N, O = self.out_shape
        F = self.in_shape[1]
        w = ref(n.param("weights"), (O, F), "ok")
        d = ref(n.delta, self.out_shape, "no")
        xin = ref(n.x, self.in_shape, "nk")
        bias = [ref(n.param("bias"), (O,), "o")] if "bias" in self.params else []
        rules = {
            "out": eq(ref(n.out, self.out_shape, "no"), add(sums(prod(w, xin), ("k", F)), *bias)),
            "weights": eq(ref(n.grad("weights"), (O, F), "ok"), sums(prod(d, xin), ("n", N))),
            "in": eq(ref(n.x_delta, self.in_shape, "nk"), sums(prod(w, d), ("o", O))),
        }
        if bias:
            rules["bias"] = eq(ref(n.grad("bias"), (O,), "o"), sums(d, ("n", N)))
        return rules
