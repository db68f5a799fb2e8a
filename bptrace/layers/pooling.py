"""Pooling: `maxpool`, `avgpool`."""
from __future__ import annotations

import math
from itertools import product

import numpy as np

from ..tensors import display_index, format_index
from .base import (
    Layer,
    _need_map,
    _out_size,
    _pair,
    _too_large,
    as_array,
    nested,
    ref,
)


class Pool(Layer):
    keys = frozenset({"size", "stride", "padding"})

    @classmethod
    def build(cls, name, spec, ctx):
        _need_map(spec, ctx, cls.type)
        layer = cls(name, ctx.in_shape)
        N, C, H, W = ctx.in_shape
        if "size" not in spec:
            raise spec.error(None, f"a {cls.type} layer needs `size` (its window, e.g. 2)")
        layer.size = size = _pair(spec, "size", None, minimum=1, signal=H == 1, across=1)
        layer.stride = stride = _pair(spec, "stride", size, minimum=1, signal=H == 1, across=1)
        layer.padding = _pair(spec, "padding", (0, 0), minimum=0, signal=H == 1, across=0)
        (kh, kw), (ph, pw) = layer.size, layer.padding
        if 2 * ph > kh or 2 * pw > kw:
            raise spec.error("padding", f"padding {ph},{pw} is more than half the {kh}×{kw} window",
                             "a window must always cover at least one real cell, as in PyTorch")
        too_large = _too_large(spec, ctx, "size", "window", layer.size, layer.padding)
        if too_large:
            raise too_large
        layer.out_shape = (N, C) + _out_size((H, W), layer.size, stride, layer.padding)
        return layer

    def multiply_adds(self):
        return 3 * math.prod(self.out_shape) * self.area

    def noise_terms(self):
        return self.area      # a window's cells; a cell is in at most `area` windows

    def window(self, i, j):
        """The input cells (h, w) under pooling window (i, j), in row-major order, without
        the padding."""
        (kh, kw), (top, left) = self.size, self.origin(i, j)
        _, _, H, W = self.in_shape
        for u, v in product(range(kh), range(kw)):
            h, w = top + u, left + v
            if 0 <= h < H and 0 <= w < W:
                yield h, w

    def origin(self, i, j):
        """Where window (i, j) starts in the input (negative inside the padding)."""
        (sh, sw), (ph, pw) = self.stride, self.padding
        return i * sh - ph, j * sw - pw

    @property
    def area(self) -> int:
        return self.size[0] * self.size[1]

    def _window_text(self):
        (kh, kw), (sh, sw), _ = self.size, self.stride, self.padding
        # name the window by the output indices a reader sees (none for a 1×1 output)
        _, _, Ho, Wo = self.out_shape
        letters = [letter for letter, size in (("i", Ho), ("j", Wo)) if size != 1]
        where = f" at ({','.join(letters)})" if letters else ""
        return f"{kh}×{kw} window{where}{'' if (sh, sw) == (kh, kw) else f' (stride {sh},{sw})'}"


class MaxPool(Pool):
    """out[n,c,i,j] = max of x over window (i,j).  Backward: each window's error goes
    whole to the cell that won it (the first maximum in row-major order on a tie);
    overlapping windows add up."""
    type = "maxpool"
    in_delta_reads = ("delta", "in")       # the routing depends on where the maxima were
    decides = True

    def winner(self, x, n, c, i, j):
        """(h, w) of the window's maximum, the candidates, and whether it was a tie."""
        cells = list(self.window(i, j))
        values = [x[n][c][h][w] for h, w in cells]
        # Values equal but for float noise (0.1 + 0.2 against 0.3) are equal on paper: a tie.
        # Each value's own noise bound says how far apart that is (none for numbers as written).
        noise = [self.floor[n][c][h][w] if self.floor else 0.0 for h, w in cells]
        best = 0
        for k in range(1, len(values)):
            if values[k] - noise[k] > values[best] + noise[best]:
                best = k
        tie = sum(1 for k, value in enumerate(values) if abs(value - values[best]) <= noise[k] + noise[best]) > 1
        return cells, values, best, tie

    def forward_noise(self, x, p, out, noise):
        """The noise of the values that could be the window's maximum on paper."""
        x, e = x.tolist(), noise["in"].tolist()
        bound = np.zeros(self.out_shape)
        for n, c, i, j in np.ndindex(*self.out_shape):
            cells, values, best, _ = self.winner(x, n, c, i, j)
            top = values[best] - e[n][c][cells[best][0]][cells[best][1]]
            bound[n, c, i, j] = max(e[n][c][h][w] for (h, w), value in zip(cells, values)
                                    if value + e[n][c][h][w] >= top)
        return bound

    def forward(self, x, p, rec):
        x = x.tolist()
        out = nested(self.out_shape)
        for n, c, i, j in np.ndindex(*self.out_shape):
            cells, values, best, tie = self.winner(x, n, c, i, j)
            out[n][c][i][j] = values[best]
            if rec:
                rec.choose((n, c, i, j), [("in", (n, c, h, w), value) for (h, w), value in zip(cells, values)],
                           best, tie)
        return as_array(out)

    def notes(self, x, names):
        x = x.tolist()
        ties = [(n, c, i, j) for n, c, i, j in np.ndindex(*self.out_shape) if self.winner(x, n, c, i, j)[3]]
        return [f"tie in the window of {names.out}{format_index(display_index(self.out_shape, at, names.base))}: "
                "the first maximum in row-major order takes the whole error" for at in ties]

    def backward(self, x, out, delta, p, recs):
        x, delta = x.tolist(), delta.tolist()
        x_delta = nested(self.in_shape)
        rec = recs["in"]
        for n, c, i, j in np.ndindex(*self.out_shape):
            cells, _, best, _ = self.winner(x, n, c, i, j)
            h, w = cells[best]
            x_delta[n][c][h][w] += delta[n][c][i][j]
            if rec:
                rec.term((n, c, h, w), ("delta", (n, c, i, j), delta[n][c][i][j]))
        return {"in": as_array(x_delta)}

    def rules(self, n):
        out = ref(n.out, self.out_shape, "ncij")
        return {
            "out": f"{out} = max of {n.x} over the {self._window_text()}",
            "in": f"{n.x_delta}: each {n.delta} element goes to the cell of {n.x} that won its window; "
                  "zeros elsewhere",
        }


class AvgPool(Pool):
    """out[n,c,i,j] = (1/area) · Σ x over window (i,j), padding counted as zeros (Zhang 2016
    eq. 6 with area 4).  Backward: each cell of a window gets 1/area of its error (eq. 32)."""
    type = "avgpool"

    @property
    def share_label(self) -> str:
        """Each cell's share of a window, as written in sums: `1/4`."""
        return f"1/{self.area}"

    def forward(self, x, p, rec):
        x = x.tolist()
        share, label = 1 / self.area, self.share_label
        out = nested(self.out_shape)
        for n, c, i, j in np.ndindex(*self.out_shape):
            total = 0
            for h, w in self.window(i, j):
                total += share * x[n][c][h][w]
                if rec:
                    rec.term((n, c, i, j), (label, None, share), ("in", (n, c, h, w), x[n][c][h][w]))
            out[n][c][i][j] = total
        return as_array(out)

    def backward(self, x, out, delta, p, recs):
        delta = delta.tolist()
        share, label = 1 / self.area, self.share_label
        x_delta = nested(self.in_shape)
        rec = recs["in"]
        for n, c, i, j in np.ndindex(*self.out_shape):
            for h, w in self.window(i, j):
                x_delta[n][c][h][w] += share * delta[n][c][i][j]
                if rec:
                    rec.term((n, c, h, w), (label, None, share), ("delta", (n, c, i, j), delta[n][c][i][j]))
        return {"in": as_array(x_delta)}

    def rules(self, n):
        area = self.area
        return {
            "out": f"{ref(n.out, self.out_shape, 'ncij')} = 1/{area} · Σ {n.x} over the {self._window_text()}",
            "in": f"{n.x_delta}: each cell gets 1/{area} of the {n.delta} of every window it is in",
        }
