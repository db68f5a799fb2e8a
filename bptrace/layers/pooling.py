"""Pooling and resampling: `maxpool`, `avgpool`, `global_maxpool`, `global_avgpool`, `upsample`."""
from __future__ import annotations

import math
from itertools import product, repeat
from operator import mul

import numpy as np

from ..notation import Frac, Ref, Sum, Word, eq, prod, seq, sym
from ..tensors import display_index, format_index
from .base import (
    Layer,
    _flag,
    _need_map,
    _out_size,
    _pair,
    _too_large,
    add_up,
    flat,
    gather,
    nested,
    position,
    ref,
    sums,
)


class Pool(Layer):
    """Windows over each map.  The loops run over `grid` = [N][C][Ho][Wo] window positions;
    `at` is where a window's value lives in the output (the same place, or [n][c] for the
    global pools, whose single window is the whole map)."""
    keys = frozenset({"size", "stride", "padding", "ceil_mode"})
    dilation = (1, 1)
    ceil_mode = False

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
        if "dilation" in cls.keys:
            layer.dilation = _pair(spec, "dilation", (1, 1), minimum=1, signal=H == 1, across=1)
        layer.ceil_mode = _flag(spec, "ceil_mode", False)
        (kh, kw), (ph, pw) = layer.size, layer.padding
        if 2 * ph > kh or 2 * pw > kw:
            raise spec.error("padding", f"padding {ph},{pw} is more than half the {kh}×{kw} window",
                             "a window must always cover at least one real cell, as in PyTorch")
        out = _out_size((H, W), layer.size, stride, layer.padding, layer.dilation, layer.ceil_mode)
        if min(out) < 1:
            raise _too_large(spec, ctx, "size", "window", layer.size, layer.padding, layer.dilation)
        layer.out_shape = (N, C) + out
        return layer

    @property
    def grid(self) -> tuple:
        return self.out_shape

    def at(self, n, c, i, j) -> tuple:
        return (n, c, i, j)

    def multiply_adds(self):
        return 3 * math.prod(self.grid) * self.area

    def noise_terms(self):
        return self.area      # a window's cells; a cell is in at most `area` windows

    def window(self, i, j):
        """The input cells (h, w) under pooling window (i, j), in row-major order, without
        the padding (and without what a ceil_mode window hangs past it)."""
        (kh, kw), (top, left), (dh, dw) = self.size, self.origin(i, j), self.dilation
        _, _, H, W = self.in_shape
        for u, v in product(range(kh), range(kw)):
            h, w = top + dh * u, left + dw * v
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
        (kh, kw), (sh, sw), (dh, dw) = self.size, self.stride, self.dilation
        # name the window by the output indices a reader sees (none for a 1×1 output)
        _, _, Ho, Wo = self.grid
        letters = [letter for letter, size in (("i", Ho), ("j", Wo)) if size != 1]
        where = f" at ({','.join(letters)})" if letters else ""
        extra = [] if (sh, sw) == (kh, kw) else [f"stride {sh},{sw}"]
        if (dh, dw) != (1, 1):
            extra.append(f"cells {dh},{dw} apart")
        if self.ceil_mode:
            extra.append("ceil_mode: the last window may hang over the edge")
        said = f" ({'; '.join(extra)})" if extra else ""
        return f"{kh}×{kw} window{where}{said}"


class MaxPool(Pool):
    """out[n,c,i,j] = max of x over window (i,j).  Backward: each window's error goes
    whole to the cell that won it (the first maximum in row-major order on a tie);
    overlapping windows add up."""
    type = "maxpool"
    keys = Pool.keys | {"dilation"}
    in_delta_reads = ("delta", "in")       # the routing depends on where the maxima were
    decides = True
    # the input's exact values (nested lists), set by the engine where float noise ties a
    # window of different floats: they pick that window's maximum instead
    exact = None

    def noisy_tie(self, x, floor) -> bool:
        """Whether some window's maximum is a tie of different floats within their noise,
        which the exact values could tell apart."""
        self.floor, self.exact, x = floor, None, x.tolist()
        return any(self._float_tie(x, n, c, i, j)[1] for n, c, i, j in np.ndindex(*self.grid))

    def _float_tie(self, x, n, c, i, j):
        """(the winner and tie of the floats, whether the tie is of different floats)."""
        cells = list(self.window(i, j))
        values = [x[n][c][h][w] for h, w in cells]
        # Values equal but for float noise (0.1 + 0.2 against 0.3) are equal on paper: a tie.
        # Each value's own noise bound says how far apart that is (none for numbers as written).
        noise = [self.floor[n][c][h][w] if self.floor else 0 for h, w in cells]
        best = 0
        for k in range(1, len(values)):
            if values[k] - noise[k] > values[best] + noise[best]:
                best = k
        tied = [values[k] for k, value in enumerate(values) if abs(value - values[best]) <= noise[k] + noise[best]]
        return (cells, values, best, len(tied) > 1), len(set(tied)) > 1

    def winner(self, x, n, c, i, j):
        """(h, w) of the window's maximum, the candidates, and whether it was a tie."""
        (cells, values, best, tie), differ = self._float_tie(x, n, c, i, j)
        if self.exact is not None and differ:
            # different floats equal within their noise: the exact values tell (1e-9 beats 0
            # however noisy its float), a tie only when equal on paper.  The same float in
            # every tied cell stays a tie, as in PyTorch (paper could differ only below 1e-16).
            exact = [self.exact[n][c][h][w] for h, w in cells]
            best = exact.index(max(exact))
            tie = exact.count(exact[best]) > 1
        return cells, values, best, tie

    def forward_noise(self, x, p, out, noise):
        """The noise of the values that could be the window's maximum on paper."""
        x, e = x.tolist(), noise["in"].tolist()
        bound = np.zeros(self.grid)
        for n, c, i, j in np.ndindex(*self.grid):
            cells, values, best, _ = self.winner(x, n, c, i, j)
            top = values[best] - e[n][c][cells[best][0]][cells[best][1]]
            bound[n, c, i, j] = max(e[n][c][h][w] for (h, w), value in zip(cells, values)
                                    if value + e[n][c][h][w] >= top)
        return bound.reshape(self.out_shape)

    def forward(self, x, p, rec):
        x = x.tolist()
        out = nested(self.grid)
        for n, c, i, j in np.ndindex(*self.grid):
            cells, values, best, tie = self.winner(x, n, c, i, j)
            out[n][c][i][j] = values[best]
            if rec:
                rec.choose(self.at(n, c, i, j), [("in", (n, c, h, w), value) for (h, w), value in zip(cells, values)],
                           best, tie)
        return self.num.array(out).reshape(self.out_shape)

    def notes(self, x, names):
        x = x.tolist()
        ties = [self.at(n, c, i, j) for n, c, i, j in np.ndindex(*self.grid) if self.winner(x, n, c, i, j)[3]]
        return [f"tie in the window of {names.out}{format_index(display_index(self.out_shape, at, names.base))}: "
                "the first maximum in row-major order takes the whole error" for at in ties]

    def backward(self, x, out, delta, p, recs):
        x, delta = x.tolist(), delta.reshape(self.grid).tolist()
        x_delta = nested(self.in_shape)
        rec = recs["in"]
        for n, c, i, j in np.ndindex(*self.grid):
            cells, _, best, _ = self.winner(x, n, c, i, j)
            h, w = cells[best]
            x_delta[n][c][h][w] += delta[n][c][i][j]
            if rec:
                rec.term((n, c, h, w), ("delta", self.at(n, c, i, j), delta[n][c][i][j]))
        return {"in": self.num.array(x_delta)}

    def rules(self, n):
        out = ref(n.out, self.out_shape, "ncij")
        return {
            "out": eq(out, seq(Word("max"), " of ", Ref(n.x), f" over the {self._window_text()}")),
            "in": seq(Ref(n.x_delta), ": each ", Ref(n.delta), " element goes to the cell of ", Ref(n.x),
                      " that won its window; zeros elsewhere"),
        }


class AvgPool(Pool):
    """out[n,c,i,j] = (1/area) · Σ x over window (i,j), padding counted as zeros (Zhang 2016
    eq. 6 with area 4).  Backward: each cell of a window gets 1/area of its error (eq. 32).
    As PyTorch's avg_pool2d, a window divides by the cells it spans up to the end of the
    padding (less than its area only when a ceil_mode window hangs past it), or with
    `count_include_pad: false` by its cells inside the input."""
    type = "avgpool"
    keys = Pool.keys | {"count_include_pad"}
    count_include_pad = True

    @classmethod
    def build(cls, name, spec, ctx):
        layer = super().build(name, spec, ctx)
        layer.count_include_pad = _flag(spec, "count_include_pad", True)
        return layer

    def divisor(self, i, j) -> int:
        """What window (i, j) divides by (PyTorch's avg_pool2d)."""
        (kh, kw), (top, left), (ph, pw) = self.size, self.origin(i, j), self.padding
        _, _, H, W = self.in_shape
        bottom, right = min(top + kh, H + ph), min(left + kw, W + pw)
        if self.count_include_pad:
            return (bottom - top) * (right - left)
        return (min(bottom, H) - max(top, 0)) * (min(right, W) - max(left, 0))

    def divisors(self) -> np.ndarray:
        """Each window's divisor, in the output's shape."""
        _, _, Ho, Wo = self.grid
        each = np.array([[self.divisor(i, j) for j in range(Wo)] for i in range(Ho)], dtype=float)
        return np.broadcast_to(each, self.grid).reshape(self.out_shape)

    @property
    def uniform(self) -> bool:
        """Every window divides by its area (the usual case)."""
        _, _, Ho, Wo = self.grid
        return all(self.divisor(i, j) == self.area for i, j in np.ndindex(Ho, Wo))

    @property
    def share_label(self) -> str:
        """Each cell's share of a window: `1/4`, or in words when windows differ."""
        return f"1/{self.area}" if self.uniform else "1/(the number of cells it counts)"

    def tables(self):
        """windows[i·Wo+j]: (its divisor, its cells h·W+w in row-major order); cells[h·W+w]:
        (the windows i·Wo+j that hold it in the order i, then j, their divisors), with
        `gather`s of them in the loops' lists.  Worked out once per geometry."""
        key = (self.in_shape, self.grid, self.size, self.stride, self.padding, self.dilation, self.ceil_mode,
               self.count_include_pad)
        cached = getattr(self, "_tables", None)
        if cached is None or cached[0] != key:
            _, _, H, W = self.in_shape
            _, _, Ho, Wo = self.grid
            windows = [(self.divisor(i, j), [h * W + w for h, w in self.window(i, j)])
                       for i, j in product(range(Ho), range(Wo))]
            cells = [([], []) for _ in range(H * W)]
            for ij, (count, hws) in enumerate(windows):
                for hw in hws:
                    cells[hw][0].append(ij)
                    cells[hw][1].append(count)
            cached = self._tables = (key, windows, cells, [(count, gather(hws)) for count, hws in windows],
                                     [(gather(ijs), counts) for ijs, counts in cells])
        return cached[1:]

    def forward(self, x, p, rec):
        N, C, Ho, Wo = self.grid
        W = self.in_shape[3]
        windows, _, gathered, _ = self.tables()
        x = x.tolist()
        out = nested((N, C, Ho * Wo))
        for n, c in product(range(N), range(C)):
            x_nc = flat(x[n][c])
            for ij, (count, cells) in enumerate(gathered):
                share = self.num.ratio(1, count)
                # Σ (1/count) · x[n,c,h,w] over the window, the shares added in turn from 0
                out[n][c][ij] = add_up(map(mul, repeat(share), cells(x_nc)))
                if rec:
                    for hw in windows[ij][1]:
                        rec.term(self.at(n, c, ij // Wo, ij % Wo), (f"1/{count}", None, share),
                                 ("in", (n, c, hw // W, hw % W), x_nc[hw]))
        return self.num.array(out).reshape(self.out_shape)

    def backward(self, x, out, delta, p, recs):
        N, C, _, Wo = self.grid
        _, _, H, W = self.in_shape
        _, cells, _, gathered = self.tables()
        delta = delta.reshape(self.grid).tolist()
        x_delta = nested((N, C, H * W))
        rec = recs["in"]
        for n, c in product(range(N), range(C)):
            d_nc = flat(delta[n][c])
            for hw, (windows, counts) in enumerate(gathered):
                # Σ (1/count) · delta[n,c,i,j] over the windows (i,j) that hold the cell, in turn
                x_delta[n][c][hw] = add_up(map(mul, [self.num.ratio(1, count) for count in counts], windows(d_nc)))
                if rec:
                    for ij, count in zip(*cells[hw]):
                        rec.term((n, c, hw // W, hw % W), (f"1/{count}", None, self.num.ratio(1, count)),
                                 ("delta", self.at(n, c, ij // Wo, ij % Wo), d_nc[ij]))
        return {"in": self.num.array(x_delta).reshape(self.in_shape)}

    def rules(self, n):
        area, out = self.area, ref(n.out, self.out_shape, "ncij")
        if self.uniform:
            return {
                "out": eq(out, prod(Frac(sym(1), sym(area)), Sum((), seq(Ref(n.x), f" over the {self._window_text()}")))),
                "in": seq(Ref(n.x_delta), ": each cell gets ", Frac(sym(1), sym(area)), " of the ", Ref(n.delta),
                          " of every window it is in"),
            }
        counted = ("inside the input and its padding",) if self.count_include_pad else \
            ("inside ", Ref(n.x), " (not the padding)")
        return {
            "out": eq(out, Sum((), seq(Ref(n.x), f" over the {self._window_text()}, divided by the number of its cells ",
                                       *counted))),
            "in": seq(Ref(n.x_delta), ": each cell gets 1/(that number) of the ", Ref(n.delta),
                      " of every window it is in"),
        }


class WholeMap:
    """A pool whose one window is the whole map: one number per map, as dense values."""
    keys = frozenset()

    @classmethod
    def build(cls, name, spec, ctx):
        return _global(cls, name, spec, ctx)

    @property
    def grid(self):
        N, C, _, _ = self.in_shape
        return (N, C, 1, 1)

    def at(self, n, c, i, j):
        return (n, c)


class GlobalMaxPool(WholeMap, MaxPool):
    """out[n,c] = max of x[n,c] over the whole map (AdaptiveMaxPool2d(1) + flatten): one
    number per map, as dense values.  Backward: the error goes to the winner (the first
    maximum in row-major order on a tie)."""
    type = "global_maxpool"

    def rules(self, n):
        return {"out": eq(ref(n.out, self.out_shape, "nc"),
                          seq(Word("max"), " of ", ref(n.x, self.in_shape, "nc"), " over the whole map")),
                "in": seq(Ref(n.x_delta), ": each ", Ref(n.delta),
                          " element goes to the cell of its map that won; zeros elsewhere")}


class GlobalAvgPool(WholeMap, AvgPool):
    """out[n,c] = 1/(H·W) · Σ x[n,c] over the whole map (AdaptiveAvgPool2d(1) + flatten):
    one number per map, as dense values.  Backward: every cell gets 1/(H·W) of its map's
    error."""
    type = "global_avgpool"

    def rules(self, n):
        _, _, H, W = self.in_shape
        cell = ref(n.x, self.in_shape, "nchw")
        share = Frac(sym(1), sym(H * W))
        return {"out": eq(ref(n.out, self.out_shape, "nc"), prod(share, sums(cell, ("h", H), ("w", W)))),
                "in": eq(cell, prod(share, ref(n.delta, self.out_shape, "nc")))}


def _global(cls, name, spec, ctx):
    _need_map(spec, ctx, cls.type)
    layer = cls(name, ctx.in_shape)
    N, C, H, W = ctx.in_shape
    layer.size = layer.stride = (H, W)
    layer.padding = (0, 0)
    layer.out_shape = (N, C)
    return layer


class Upsample(Layer):
    """out[n,c,i,j] = x[n,c,⌊i/sh⌋,⌊j/sw⌋]: each cell copied into an sh×sw block (nearest
    neighbour, as F.interpolate(mode="nearest") with an integer scale).  Backward: each
    cell gets the sum of its block's errors."""
    type = "upsample"
    keys = frozenset({"scale"})

    @classmethod
    def build(cls, name, spec, ctx):
        _need_map(spec, ctx, "upsample")
        layer = cls(name, ctx.in_shape)
        N, C, H, W = ctx.in_shape
        if "scale" not in spec:
            raise spec.error(None, "an upsample layer needs `scale` (how many times larger, e.g. 2 or [1, 2])")
        layer.scale = _pair(spec, "scale", None, minimum=1, signal=H == 1, across=1)
        layer.out_shape = (N, C, H * layer.scale[0], W * layer.scale[1])
        return layer

    def multiply_adds(self):
        return 3 * math.prod(self.out_shape)

    def noise_terms(self):
        return self.scale[0] * self.scale[1]

    def forward(self, x, p, rec):
        x = x.tolist()
        sh, sw = self.scale
        out = nested(self.out_shape)
        for n, c, i, j in np.ndindex(*self.out_shape):
            out[n][c][i][j] = x[n][c][i // sh][j // sw]
            if rec:
                rec.term((n, c, i, j), ("in", (n, c, i // sh, j // sw), x[n][c][i // sh][j // sw]))
        return self.num.array(out)

    def backward(self, x, out, delta, p, recs):
        delta = delta.tolist()
        sh, sw = self.scale
        x_delta = nested(self.in_shape)
        rec = recs["in"]
        for n, c, h, w in np.ndindex(*self.in_shape):
            total = 0
            for a, b in product(range(sh), range(sw)):
                total += delta[n][c][h * sh + a][w * sw + b]
                if rec:
                    rec.term((n, c, h, w), ("delta", (n, c, h * sh + a, w * sw + b), delta[n][c][h * sh + a][w * sw + b]))
            x_delta[n][c][h][w] = total
        return {"in": self.num.array(x_delta)}

    def rules(self, n):
        N, C, H, W = self.in_shape
        sh, sw = self.scale
        base = n.base

        def source(letter, s):
            if s == 1:
                return letter
            return f"⌊{letter}/{s}⌋" if not base else f"⌊({letter}−1)/{s}⌋+1"
        block = (position("h", H, "a", sh, stride=sh, pad=0, flip=False, base=base),
                 position("w", W, "b", sw, stride=sw, pad=0, flip=False, base=base))
        return {
            "out": eq(ref(n.out, self.out_shape, "ncij"),
                      seq(ref(n.x, self.in_shape, ("n", "c", source("i", sh), source("j", sw))),
                          f"  (each cell copied into a {sh}×{sw} block)")),
            "in": eq(ref(n.x_delta, self.in_shape, "nchw"),
                     seq(sums(ref(n.delta, self.out_shape, ("n", "c") + block), ("a", sh), ("b", sw)),
                         "  (the sum over its block)")),
        }
