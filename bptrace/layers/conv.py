"""Convolution: `conv`, and the transposed convolution `conv_transpose`."""
from __future__ import annotations

import math
from itertools import product
from operator import mul

import numpy as np

from .base import (
    Layer,
    _bias,
    _letters_text,
    _makes,
    _need_map,
    _out_size,
    _pair,
    _parameter,
    _set_bias,
    _too_large,
    add_up,
    gather,
    nested,
    position,
    ref,
    sums,
)
from ..notation import Ref, Sum, add, eq, prod, seq, sym


class Conv(Layer):
    """out[n,o,i,j] = Σ_c Σ_u Σ_v kernel[o,c,u,v] · x[n, c, i·sh+dh·u−ph, j·sw+dw·v−pw] + bias[o]

    (correlation, as PyTorch; taps `dilation` apart).  With `conventions.kernel:
    convolution` the kernel is turned by 180° first, so tap (u,v) reads
    x[i·sh+dh·(kh−1−u)−ph, ...]: Zhang 2016 eq. 5's I(i−u, j−v) with the kernel indexed from
    its corner.  Positions outside the input are the zero padding and add nothing.
    `bias: false` leaves the bias out altogether (PyTorch's bias=False).
    """
    type = "conv"
    keys = frozenset({"kernel", "bias", "stride", "padding", "dilation", "groups", "out_channels", "size"})
    _summing = False     # set while the noise bounds' magnitude runs go through forward/backward
    param_roles = ("kernel", "bias")
    in_delta_reads = ("delta", "kernel")

    @classmethod
    def build(cls, name, spec, ctx):
        _need_map(spec, ctx, "conv")
        layer = cls(name, ctx.in_shape)
        N, C, H, W = ctx.in_shape
        layer.stride = _pair(spec, "stride", (1, 1), minimum=1, signal=H == 1, across=1)
        layer.padding = _pair(spec, "padding", (0, 0), minimum=0, signal=H == 1, across=0)
        layer.dilation = _pair(spec, "dilation", (1, 1), minimum=1, signal=H == 1, across=1)
        layer.groups = groups = spec.integer("groups", 1, minimum=1)
        layer.flip = ctx.conventions.kernel == "convolution"
        if C % groups:
            raise spec.error("groups", f"groups = {groups} does not divide the {C} input maps")
        in_per_group = C // groups
        written_size = None
        if "size" in spec:
            written_size = _pair(spec, "size", None, minimum=1, signal=H == 1, across=1)
        if "kernel" in spec:
            # a fill that leaves out its shape takes the one out_channels and size give
            fill_shape = (spec.integer("out_channels", minimum=1), in_per_group) + written_size \
                if "out_channels" in spec and written_size else None
            written = spec.tensor("kernel", what="the kernel", shape=fill_shape)
            shape = cls._kernel_shape(spec, written.shape, in_per_group, H, name, ctx, groups)
            if "out_channels" in spec and spec.integer("out_channels", minimum=1) != shape[0]:
                raise spec.error("out_channels", f"out_channels is {spec.get('out_channels')}, but the kernel "
                                                 f"has {shape[0]} filter{'s' * (shape[0] != 1)}",
                                 "leave out `out_channels` when the kernel is written")
            if written_size is not None and written_size != shape[2:]:
                raise spec.error("size", f"size is {written_size[0]}×{written_size[1]}, but the kernel is "
                                         f"{shape[2]}×{shape[3]}", "leave out `size` when the kernel is written")
        else:
            if "out_channels" not in spec or "size" not in spec:
                raise spec.error(None, "a conv layer needs `kernel`, or `out_channels` and `size` with `init`")
            shape = (spec.integer("out_channels", minimum=1), in_per_group) + written_size
        out_channels, _, kh, kw = shape
        if out_channels % groups:
            raise spec.error("groups" if "kernel" not in spec else "kernel",
                             f"groups = {groups} does not divide the {out_channels} output maps")
        too_large = _too_large(spec, ctx, "kernel" if "kernel" in spec else "size", "kernel",
                               (kh, kw), layer.padding, layer.dilation)
        if too_large:
            raise too_large
        area = kh * kw
        layer.params["kernel"] = _parameter(spec, "kernel", shape, ctx,
                                            (in_per_group * area, out_channels * area), "the kernel")
        _set_bias(layer, _bias(spec, out_channels, "the bias", " (one per output map)"))
        layer.out_shape = (N, out_channels) + _out_size((H, W), (kh, kw), layer.stride, layer.padding,
                                                        layer.dilation)
        layer.taps()           # worked out once, with the geometry (the loops read it)
        return layer

    @staticmethod
    def _kernel_shape(spec, written, in_per_group, H, name, ctx, groups):
        """The canonical [out][in/groups][kh][kw] shape of a kernel written with length-1
        axes left out: the last two axes are the kernel's rows and columns (the last one
        only, for a 1-D signal); any axis before them is `out`, or `in` when the layer
        has several input maps per group."""
        spatial = 1 if H == 1 and len(written) in (1, 2) and not (len(written) == 2 and in_per_group > 1) else 2
        if len(written) > 4 or len(written) < spatial:
            found = "a single number" if not written else f"{len(written)} nested levels"
            raise spec.error("kernel", f"a kernel is written [kh][kw], [out][kh][kw] or [out][in][kh][kw]; "
                                       f"found {found}")
        if spatial == 1:
            lead, kh, kw = written[:-1], 1, written[-1]
        else:
            lead, (kh, kw) = written[:-2], written[-2:]
        if len(lead) == 2:
            out, inner = lead
        elif len(lead) == 1:
            out, inner = (lead[0], 1) if in_per_group == 1 else (1, lead[0])
        else:
            out, inner = 1, 1
        if inner != in_per_group:
            # kernels are written [out][in][kh][kw]: `inner` is what the kernel reads
            expects = inner * groups
            per_group = f" ({inner} per group × {groups} groups)" if groups > 1 else ""
            maps = ctx.in_shape[1]
            raise spec.error("kernel", f"conv {name} expects {expects} input map{'s' * (expects != 1)}{per_group}; "
                                       + _makes(ctx, f"{maps}"),
                             f"a kernel is written [out][in][kh][kw]; here in = {in_per_group}")
        return (out, inner, kh, kw)

    def term_count(self, step):
        # the bias gradient sums the delta over every output position of every sample
        return math.prod(self.out_shape) if step == "grad.bias" else None

    def multiply_adds(self):
        return 3 * math.prod(self.out_shape) * math.prod(self.params["kernel"].shape[1:])

    def noise_terms(self):
        # out: the taps and the bias; grad.kernel, grad.bias: every output position and sample;
        # input delta: every filter's taps
        (N, O, Ho, Wo), (_, in_per_group, kh, kw) = self.out_shape, self.params["kernel"].shape
        return max(in_per_group * kh * kw + 1, N * Ho * Wo, O * kh * kw)

    def window(self, o, i, j):
        """The (kernel channel, input channel, u, v, h, w) under output position (o, i, j),
        skipping taps that fall on the zero padding."""
        in_per_group = self.params["kernel"].shape[1]
        first = (o // (self.out_shape[1] // self.groups)) * in_per_group
        rows, columns = self.taps()
        return [(c, first + c, u, v, h, w) for c in range(in_per_group) for u, h in rows[i] for v, w in columns[j]]

    def taps(self) -> tuple:
        """(rows, columns): rows[i] the (u, h) of every kernel row that reads a real input row
        at output row i, columns[j] likewise (v, w).  A window is their product, the same for
        every map: worked out once per layer, in Ho·kh + Wo·kw pairs."""
        # keyed by the whole geometry: the mistake catalog copies a layer and may turn its kernel
        key = (self.in_shape, self.out_shape, self.params["kernel"].shape, self.stride, self.padding,
               self.dilation, self.flip)
        cached = getattr(self, "_taps", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        _, _, kh, kw = self.params["kernel"].shape
        _, _, H, W = self.in_shape
        _, _, Ho, Wo = self.out_shape

        def axis(out_size, taps, stride, pad, dilation, size):
            # which input row (column) tap u reads: flipped under the convolution convention
            return [[(u, at) for u in range(taps)
                     for at in [i * stride + dilation * ((taps - 1 - u) if self.flip else u) - pad] if 0 <= at < size]
                    for i in range(out_size)]
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        pairs = (axis(Ho, kh, sh, ph, dh, H), axis(Wo, kw, sw, pw, dw, W))
        self._taps = (key, pairs)
        return pairs

    def tables(self) -> ConvTables:
        """The loops' index tables, worked out from `taps()` once per geometry."""
        pairs = self.taps()
        key, cached = self._taps[0], getattr(self, "_tables", None)
        if cached is None or cached[0] != key:
            self._tables = cached = (key, ConvTables(pairs, self.params["kernel"].shape, self.in_shape, self.out_shape,
                                                     self.groups))
        return cached[1]

    def forward(self, x, p, rec):
        if self._summing:
            return self._summed_forward(x, p)      # a noise bound's magnitudes, not a traced value
        N, O, Ho, Wo = self.out_shape
        _, G, kh, kw = p["kernel"].shape
        _, _, H, W = self.in_shape
        groups, filters = self.groups, self.out_shape[1] // self.groups   # a group's filters read its G maps
        t = self.tables()
        kernel = [k_o.reshape(-1).tolist() for k_o in p["kernel"]]       # kernel[o] flat: c·kh·kw + u·kw + v
        bias = p["bias"].tolist() if "bias" in p else None
        out = nested((N, O, Ho * Wo))
        # kernel[o,c,u,v] of each window shape (fewer taps at the padding), in the order c, u, v
        k_window = [[taps(k_o) for taps in t.window_taps] for k_o in kernel]
        for n, g in product(range(N), range(groups)):
            maps = x[n, g * G:(g + 1) * G].reshape(-1).tolist()         # the group's maps flat: c·H·W + h·W + w
            # x[n,c,h,w] under each window in the same order, read once for the group's filters
            x_window = [cells(maps) for _, cells in t.windows]
            for o in range(g * filters, (g + 1) * filters):
                for ij, (shape, _) in enumerate(t.windows):
                    # Σ_c Σ_u Σ_v kernel[o,c,u,v] · x[n,c,h,w]: the products added in turn, from 0
                    total = add_up(map(mul, k_window[o][shape], x_window[ij]))
                    i, j = divmod(ij, Wo)
                    if rec:
                        for ck, (u, h), (v, w) in product(range(G), t.rows[i], t.columns[j]):
                            rec.term((n, o, i, j), ("kernel", (o, ck, u, v), kernel[o][(ck * kh + u) * kw + v]),
                                     ("in", (n, g * G + ck, h, w), maps[(ck * H + h) * W + w]))
                    if bias is not None:
                        total += bias[o]
                        if rec:
                            rec.term((n, o, i, j), ("bias", (o,), bias[o]))
                    out[n][o][ij] = total
        return self.num.array(out).reshape(self.out_shape)

    def backward(self, x, out, delta, p, recs):
        # The chain rule through out[n,o,i,j] = Σ kernel[o,c,u,v]·x[n,c,h,w] + bias[o]:
        # every output element sends delta·x to the kernel tap that made it, delta·kernel
        # to the input cell it read, and delta to the bias.  Summing these scattered
        # pieces is the 'full convolution' of the delta with the turned kernel.  Each sum
        # adds its pieces in the order of the output elements (n, o, i, j) that sent them.
        if self._summing:
            return self._summed_backward(x, delta, p)
        N, O, Ho, Wo = self.out_shape
        _, C, H, W = self.in_shape
        _, G, kh, kw = p["kernel"].shape
        groups, filters = self.groups, self.out_shape[1] // self.groups
        t = self.tables()
        kernel_grad = [[[0] * (kh * kw) for _ in range(G)] for _ in range(O)]     # [o][c][u·kw+v]
        bias_grad = [0] * O if "bias" in p else None
        x_delta = nested((N, C, H * W))                                           # [n][c][h·W+w]
        rk, rb, rx = recs["kernel"], recs.get("bias"), recs["in"]
        kernel = [k_o.reshape(-1).tolist() for k_o in p["kernel"]]       # kernel[o] flat: c·kh·kw + u·kw + v
        # kernel[o,c,u,v] of the group's filters over the taps that read one input cell, in
        # the order o, i, j, for each cell shape (fewer taps near the edges)
        k_cell = [[[taps(k_gc) for taps in t.cell_taps] for k_gc in
                   (p["kernel"][g * filters:(g + 1) * filters, ck].reshape(-1).tolist() for ck in range(G))]
                  for g in range(groups)]
        for n in range(N):
            x_n = [x_c.reshape(-1).tolist() for x_c in x[n]]             # x[n,c] flat: h·W + w
            d_n = [d_o.reshape(-1).tolist() for d_o in delta[n]]         # delta[n,o] flat: i·Wo + j
            # x[n,c,h,w] each kernel tap (u,v) met, over the output positions in the order i, then j
            x_tap = [[cells(x_c) for _, cells in t.tap_pairs] for x_c in x_n]
            for o in range(O):
                d_o, first = d_n[o], (o // filters) * G
                if bias_grad is not None:
                    # Σ_n Σ_i Σ_j delta[n,o,i,j]
                    bias_grad[o] = add_up(d_o, bias_grad[o])
                    if rb:
                        for ij in range(Ho * Wo):
                            rb.term((o,), ("delta", (n, o, ij // Wo, ij % Wo), d_o[ij]))
                d_tap = [positions(d_o) for positions, _ in t.tap_pairs]
                for ck, uv in product(range(G), range(kh * kw)):
                    # Σ_n Σ_i Σ_j delta[n,o,i,j] · x[n,c,h,w] over the positions where tap (u,v) read x
                    grad, c = kernel_grad[o][ck], first + ck
                    grad[uv] = add_up(map(mul, d_tap[uv], x_tap[c][uv]), grad[uv])
                    if rk:
                        for ij, hw in zip(*t.tap_indices[uv]):
                            rk.term((o, ck, uv // kw, uv % kw), ("delta", (n, o, ij // Wo, ij % Wo), d_o[ij]),
                                    ("in", (n, c, hw // W, hw % W), x_n[c][hw]))
            for g in range(groups):
                readers = range(g * filters, (g + 1) * filters)
                # delta[n,o,i,j] of the group's filters at the outputs that read each input cell
                d_group = delta[n, g * filters:(g + 1) * filters].reshape(-1).tolist()
                d_cell = [positions(d_group) for _, positions in t.cells]
                for ck, hw in product(range(G), range(H * W)):
                    c, shape = g * G + ck, t.cells[hw][0]
                    # Σ_o Σ_i Σ_j delta[n,o,i,j] · kernel[o,c,u,v] over the outputs and taps that read (h,w)
                    x_delta[n][c][hw] = add_up(map(mul, d_cell[hw], k_cell[g][ck][shape]))
                    if rx:
                        for o in readers:
                            for ij, uv in zip(*t.cell_indices[hw]):
                                rx.term((n, c, hw // W, hw % W), ("delta", (n, o, ij // Wo, ij % Wo), d_n[o][ij]),
                                        ("kernel", (o, ck, uv // kw, uv % kw), kernel[o][ck * kh * kw + uv]))
        result = {"in": self.num.array(x_delta).reshape(self.in_shape),
                  "kernel": self.num.array(kernel_grad).reshape(p["kernel"].shape)}
        if bias_grad is not None:
            result["bias"] = self.num.array(bias_grad)
        return result

    # --- the noise bounds' magnitude runs, summed with numpy (the loops above are the formulas) ---

    def _joins(self):
        """For each filter o: the flat indices, within one sample, of every (output cell,
        kernel tap, input cell) its windows join: the terms of `forward`'s sums."""
        rows, columns = self.taps()
        _, O, Ho, Wo = self.out_shape
        _, C, H, W = self.in_shape
        _, in_per_group, kh, kw = self.params["kernel"].shape
        ri, ru, rh = (np.array([(i, u, h) for i, pairs in enumerate(rows) for u, h in pairs], dtype=np.int64)
                      .reshape(-1, 3).T)
        cj, cv, cw = (np.array([(j, v, w) for j, pairs in enumerate(columns) for v, w in pairs], dtype=np.int64)
                      .reshape(-1, 3).T)
        ck = np.arange(in_per_group)[:, None, None]
        for o in range(O):
            first = (o // (O // self.groups)) * in_per_group
            out = np.broadcast_to((o * Ho + ri[:, None]) * Wo + cj[None, :], (in_per_group, ri.size, cj.size))
            tap = ((o * in_per_group + ck) * kh + ru[:, None]) * kw + cv[None, :]
            cell = ((first + ck) * H + rh[:, None]) * W + cw[None, :]
            yield out.ravel(), np.broadcast_to(tap, out.shape).ravel(), np.broadcast_to(cell, out.shape).ravel()

    def magnitude_forward(self, x, p):
        self._summing = True          # through `forward`, so that a mistake's changes apply too
        try:
            return self.forward(x, p, None)
        finally:
            self._summing = False

    def magnitude_backward(self, x, out, delta, p, recs):
        self._summing = True
        try:
            return self.backward(x, out, delta, p, recs)
        finally:
            self._summing = False

    def _summed_forward(self, x, p):
        N = x.shape[0]
        xs, kernel = x.reshape(N, -1), p["kernel"].reshape(-1)
        size = math.prod(self.out_shape[1:])
        out = np.zeros((N, size))
        for cells, taps, reads in self._joins():
            out += np.stack([np.bincount(cells, kernel[taps] * xs[n, reads], size) for n in range(N)])
        out = out.reshape(self.out_shape)
        if "bias" in p:
            out += p["bias"].reshape(1, -1, 1, 1)
        return out

    def _summed_backward(self, x, delta, p):
        N = x.shape[0]
        xs, kernel, ds = x.reshape(N, -1), p["kernel"].reshape(-1), delta.reshape(N, -1)
        kernel_grad, x_delta = np.zeros(kernel.size), np.zeros(xs.shape)
        for cells, taps, reads in self._joins():
            for n in range(N):
                kernel_grad += np.bincount(taps, ds[n, cells] * xs[n, reads], kernel.size)
                x_delta[n] += np.bincount(reads, ds[n, cells] * kernel[taps], xs.shape[1])
        result = {"in": x_delta.reshape(x.shape), "kernel": kernel_grad.reshape(p["kernel"].shape)}
        if "bias" in p:
            result["bias"] = delta.sum(axis=(0, 2, 3)).reshape(p["bias"].shape)
        return result

    def _letters(self, base):
        _, in_per_group, kh, kw = self.params["kernel"].shape
        out_per_group = self.out_shape[1] // self.groups
        if self.groups == 1:
            channel = "c"
        elif in_per_group == 1 and out_per_group == 1:
            channel = "o"            # one filter per map
        else:
            o = "(o−1)" if base else "o"
            channel = f"{in_per_group}⌊{o}/{out_per_group}⌋+c"
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        _, _, Ho, Wo = self.out_shape
        return (channel,
                position("i", Ho, "u", kh, stride=sh, pad=ph, flip=self.flip, base=base, dilation=dh),
                position("j", Wo, "v", kw, stride=sw, pad=pw, flip=self.flip, base=base, dilation=dw))

    def rules(self, n):
        N, O, Ho, Wo = self.out_shape
        kshape = self.params["kernel"].shape
        _, in_per_group, kh, kw = kshape
        channel, hpos, wpos = self._letters(n.base)
        k = ref(n.param("kernel"), kshape, "ocuv")
        xin = ref(n.x, self.in_shape, ("n", channel, hpos, wpos))
        b = ref(n.param("bias"), (O,), "o")
        d = ref(n.delta, self.out_shape, "noij")
        taps = (("c", in_per_group), ("u", kh), ("v", kw))
        outputs = (("n", N), ("i", Ho), ("j", Wo))
        padded = " (zero outside the input)" if any(self.padding) else ""
        turned = "kernel as written" if self.flip else "kernel turned 180°"
        dh, dw = self.dilation
        spaced = "" if (dh, dw) == (1, 1) else f", its taps {dh if dh == dw else f'{dh},{dw}'} apart"
        bias = "bias" in self.params
        rules = {
            "out": eq(ref(n.out, self.out_shape, "noij"),
                      seq(add(sums(prod(k, xin), *taps), *([b] if bias else [])), padded)),
            "kernel": eq(ref(n.grad("kernel"), kshape, "ocuv"), sums(prod(d, xin), *outputs)),
            "in": eq(ref(n.x_delta, self.in_shape, ("n", "c", "h", "w")),
                     Sum((), seq(prod(d, k), f" over every output {_letters_text('ij', (Ho, Wo))}and tap "
                                             f"{_letters_text('uv', (kh, kw))}that read it, i.e. the zero-padded ",
                                 Ref(n.delta), f" slid under the {turned}{spaced}"))),
        }
        if bias:
            rules["bias"] = eq(ref(n.grad("bias"), (O,), "o"), sums(d, *outputs))
        return rules


class ConvTables:
    """Conv's geometry as flat-index tables, so that each sum of products is one pass over two
    lists (`add_up(map(mul, ...))`, the terms added left to right from 0, as a `+=` loop
    adds them).  Maps are read flat (input cell h·W+w, output position i·Wo+j, kernel tap
    u·kw+v), and a group's maps one after another (c·H·W + h·W + w, o·Ho·Wo + i·Wo + j, a
    filter c·kh·kw + u·kw + v, a kernel channel over the group's filters o·kh·kw + u·kw + v).
    Taking the items of a flat list is `gather(indices)` (itemgetter).

    windows[i·Wo+j]    (shape, cells): the cells of the group's input maps that output
                       position's window reads, in the order c, u, v; its taps in a filter are
                       window_taps[shape] (windows that lose the same taps to the padding
                       share one shape)
    tap_pairs[u·kw+v]  (positions, cells): the output positions tap (u,v) made and the input
                       cells it read there, in the order i, then j, in one map each
                       (tap_indices: the indices)
    cells[h·W+w]       (shape, positions): the outputs of the group's filters that read input
                       cell (h,w), in the order o, i, j, through the taps cell_taps[shape] of
                       one kernel channel (cell_indices: the indices in one map and one filter)
    """

    def __init__(self, pairs, kernel_shape, in_shape, out_shape, groups):
        rows, columns = pairs
        O, G, kh, kw = kernel_shape
        _, _, H, W = in_shape
        _, _, Ho, Wo = out_shape
        filters = O // groups
        self.rows, self.columns = rows, columns
        shapes: dict = {}
        self.windows = []
        for i, j in product(range(Ho), range(Wo)):
            taps = tuple(u * kw + v for (u, _), (v, _) in product(rows[i], columns[j]))
            cells = [h * W + w for (_, h), (_, w) in product(rows[i], columns[j])]
            self.windows.append((shapes.setdefault(taps, len(shapes)),
                                 gather([c * H * W + hw for c in range(G) for hw in cells])))
        self.window_taps = [gather([c * kh * kw + uv for c in range(G) for uv in taps]) for taps in shapes]
        by_u, by_v = [[] for _ in range(kh)], [[] for _ in range(kw)]     # (i, h) of each u, (j, w) of each v
        by_h, by_w = [[] for _ in range(H)], [[] for _ in range(W)]       # (i, u) of each h, (j, v) of each w
        for i, row in enumerate(rows):
            for u, h in row:
                by_u[u].append((i, h))
                by_h[h].append((i, u))
        for j, column in enumerate(columns):
            for v, w in column:
                by_v[v].append((j, w))
                by_w[w].append((j, v))
        self.tap_indices = [([i * Wo + j for (i, _), (j, _) in product(by_u[u], by_v[v])],
                             [h * W + w for (_, h), (_, w) in product(by_u[u], by_v[v])])
                            for u, v in product(range(kh), range(kw))]
        self.tap_pairs = [(gather(positions, Ho * Wo), gather(cells)) for positions, cells in self.tap_indices]
        self.cell_indices = [([i * Wo + j for (i, _), (j, _) in product(by_h[h], by_w[w])],
                              [u * kw + v for (_, u), (_, v) in product(by_h[h], by_w[w])])
                             for h, w in product(range(H), range(W))]
        shapes = {}
        self.cells = [(shapes.setdefault(tuple(taps), len(shapes)),
                       gather([o * Ho * Wo + ij for o in range(filters) for ij in positions]))
                      for positions, taps in self.cell_indices]
        self.cell_taps = [gather([o * kh * kw + uv for o in range(filters) for uv in taps]) for taps in shapes]


class ConvTranspose(Layer):
    """out[n, m, i·sh+dh·u−ph, j·sw+dw·v−pw] += kernel[c,o,u,v] · x[n,c,i,j], then + bias[m]

    (PyTorch's ConvTranspose2d, kernel [in][out/groups][kh][kw]; m is output map o of the
    group input map c belongs to): each input element times the kernel, added into the
    output window it lands on (the scatter).  The output is (H−1)·s − 2p + d·(k−1) +
    output_padding + 1 high; positions outside it (within the padding) are dropped.
    Backward: the input delta is the correlation of the output delta with the kernel (a
    strided, dilated conv), the kernel gradient each input element times the delta where it
    landed.  Under `conventions.kernel: convolution` the kernel is turned by 180° first.
    """
    type = "conv_transpose"
    keys = frozenset({"kernel", "bias", "stride", "padding", "output_padding", "dilation", "groups",
                      "out_channels", "size"})
    param_roles = ("kernel", "bias")
    in_delta_reads = ("delta", "kernel")

    @classmethod
    def build(cls, name, spec, ctx):
        _need_map(spec, ctx, "conv_transpose")
        layer = cls(name, ctx.in_shape)
        N, C, H, W = ctx.in_shape
        signal = H == 1
        layer.stride = _pair(spec, "stride", (1, 1), minimum=1, signal=signal, across=1)
        layer.padding = _pair(spec, "padding", (0, 0), minimum=0, signal=signal, across=0)
        layer.output_padding = _pair(spec, "output_padding", (0, 0), minimum=0, signal=signal, across=0)
        layer.dilation = _pair(spec, "dilation", (1, 1), minimum=1, signal=signal, across=1)
        layer.groups = groups = spec.integer("groups", 1, minimum=1)
        layer.flip = ctx.conventions.kernel == "convolution"
        if C % groups:
            raise spec.error("groups", f"groups = {groups} does not divide the {C} input maps")
        written_size = _pair(spec, "size", None, minimum=1, signal=signal, across=1) if "size" in spec else None
        if "kernel" in spec:
            written = spec.tensor("kernel", what="the kernel")
            shape = cls._kernel_shape(spec, written.shape, C, signal, name, ctx)
            if "out_channels" in spec and spec.integer("out_channels", minimum=1) != shape[1] * groups:
                raise spec.error("out_channels", f"out_channels is {spec.get('out_channels')}, but the kernel "
                                                 f"makes {shape[1] * groups} output map{'s' * (shape[1] * groups != 1)}",
                                 "leave out `out_channels` when the kernel is written")
            if written_size is not None and written_size != shape[2:]:
                raise spec.error("size", f"size is {written_size[0]}×{written_size[1]}, but the kernel is "
                                         f"{shape[2]}×{shape[3]}", "leave out `size` when the kernel is written")
        else:
            if "out_channels" not in spec or written_size is None:
                raise spec.error(None, "a conv_transpose layer needs `kernel`, or `out_channels` and `size` with `init`")
            out_channels = spec.integer("out_channels", minimum=1)
            if out_channels % groups:
                raise spec.error("groups", f"groups = {groups} does not divide the {out_channels} output maps")
            shape = (C, out_channels // groups) + written_size
        _, out_per_group, kh, kw = shape
        for axis, what in ((0, "rows"), (1, "columns")):
            op, s, d = layer.output_padding[axis], layer.stride[axis], layer.dilation[axis]
            if op >= s and op >= d:
                raise spec.error("output_padding", f"output_padding {op} (along the {what}) must be smaller than "
                                                   f"the stride ({s}) or the dilation ({d}), as in PyTorch",
                                 "it only picks among the output sizes a stride allows")
        size = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
                     zip((H, W), layer.stride, layer.padding, layer.dilation, (kh, kw), layer.output_padding))
        if min(size) < 1:
            raise spec.error("padding", f"the output would be {size[0]}×{size[1]}: padding "
                                        f"{layer.padding[0]},{layer.padding[1]} crops more than the "
                                        "transposed convolution makes", "use less padding")
        area = kh * kw
        # PyTorch's fans of a [in][out/groups][kh][kw] weight: fan_in = out/groups·area, fan_out = in·area
        layer.params["kernel"] = _parameter(spec, "kernel", shape, ctx, (out_per_group * area, C * area),
                                            "the kernel")
        _set_bias(layer, _bias(spec, out_per_group * groups, "the bias", " (one per output map)"))
        layer.out_shape = (N, out_per_group * groups) + size
        return layer

    @staticmethod
    def _kernel_shape(spec, written, C, signal, name, ctx):
        """The canonical [in][out/groups][kh][kw] shape of a kernel written with length-1 axes
        left out: the last two axes are the kernel's rows and columns (the last one only, for
        a 1-D signal); one axis before them is `in` when the layer reads several maps, else
        `out`."""
        spatial = 1 if signal and len(written) in (1, 2) and not (len(written) == 2 and C > 1) else 2
        if len(written) > 4 or len(written) < spatial:
            found = "a single number" if not written else f"{len(written)} nested levels"
            raise spec.error("kernel", "a conv_transpose kernel is written [kh][kw], [in][kh][kw], [out][kh][kw] "
                                       f"or [in][out/groups][kh][kw]; found {found}")
        if spatial == 1:
            lead, kh, kw = written[:-1], 1, written[-1]
        else:
            lead, (kh, kw) = written[:-2], written[-2:]
        if len(lead) == 2:
            inner, out = lead
        elif len(lead) == 1:
            inner, out = (1, lead[0]) if C == 1 else (lead[0], 1)
        else:
            inner, out = 1, 1
        if inner != C:
            raise spec.error("kernel", f"conv_transpose {name} reads {inner} input map{'s' * (inner != 1)}; "
                                       + _makes(ctx, f"{C}"),
                             f"its kernel is written [in][out/groups][kh][kw] (PyTorch's ConvTranspose2d "
                             f"weight): here in = {C}")
        return (inner, out, kh, kw)

    def multiply_adds(self):
        _, out_per_group, kh, kw = self.params["kernel"].shape
        return 3 * math.prod(self.in_shape) * out_per_group * kh * kw + 3 * math.prod(self.out_shape)

    def noise_terms(self):
        # out: every input cell and tap that lands on it, and the bias; input delta: its
        # taps in every output map of its group; grad.kernel: every input cell and sample;
        # grad.bias: every output position and sample
        (N, C, H, W), (_, out_per_group, kh, kw) = self.in_shape, self.params["kernel"].shape
        _, _, Ho, Wo = self.out_shape
        return max(C // self.groups * kh * kw + 1, out_per_group * kh * kw, N * H * W, N * Ho * Wo)

    def landing(self, c, i, j):
        """(kernel's output map, output map, u, v, h, w): where input cell (c, i, j) times
        tap (u, v) lands in the output, skipping the positions cropped by the padding."""
        _, out_per_group, kh, kw = self.params["kernel"].shape
        first = (c // (self.in_shape[1] // self.groups)) * out_per_group
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        _, _, Ho, Wo = self.out_shape
        for o, u, v in product(range(out_per_group), range(kh), range(kw)):
            h = i * sh + dh * ((kh - 1 - u) if self.flip else u) - ph
            w = j * sw + dw * ((kw - 1 - v) if self.flip else v) - pw
            if 0 <= h < Ho and 0 <= w < Wo:
                yield o, first + o, u, v, h, w

    def forward(self, x, p, rec):
        x, kernel = x.tolist(), p["kernel"].tolist()
        out = nested(self.out_shape)
        for n, c, i, j in np.ndindex(*self.in_shape):
            value = x[n][c][i][j]
            for o, m, u, v, h, w in self.landing(c, i, j):
                out[n][m][h][w] += kernel[c][o][u][v] * value
                if rec:
                    rec.term((n, m, h, w), ("kernel", (c, o, u, v), kernel[c][o][u][v]), ("in", (n, c, i, j), value))
        if "bias" in p:
            bias = p["bias"].tolist()
            for n, m, h, w in np.ndindex(*self.out_shape):
                out[n][m][h][w] += bias[m]
                if rec:
                    rec.term((n, m, h, w), ("bias", (m,), bias[m]))
        return self.num.array(out)

    def backward(self, x, out, delta, p, recs):
        # out[n,m,h,w] collects kernel[c,o,u,v]·x[n,c,i,j] for each (i,j,u,v) landing on it: so
        # x.delta[n,c,i,j] = Σ delta[n,m,h,w]·kernel[c,o,u,v] over where (i,j) landed (the
        # correlation of the delta with the kernel), and kernel[c,o,u,v] gets x·delta there.
        x, kernel, delta = x.tolist(), p["kernel"].tolist(), delta.tolist()
        kernel_grad = nested(p["kernel"].shape)
        x_delta = nested(self.in_shape)
        rk, rb, rx = recs["kernel"], recs.get("bias"), recs["in"]
        for n, c, i, j in np.ndindex(*self.in_shape):
            value, total = x[n][c][i][j], 0
            for o, m, u, v, h, w in self.landing(c, i, j):
                d = delta[n][m][h][w]
                total += d * kernel[c][o][u][v]
                kernel_grad[c][o][u][v] += value * d
                if rx:
                    rx.term((n, c, i, j), ("delta", (n, m, h, w), d), ("kernel", (c, o, u, v), kernel[c][o][u][v]))
                if rk:
                    rk.term((c, o, u, v), ("in", (n, c, i, j), value), ("delta", (n, m, h, w), d))
            x_delta[n][c][i][j] = total
        result = {"in": self.num.array(x_delta), "kernel": self.num.array(kernel_grad)}
        if "bias" in p:
            bias_grad = nested(p["bias"].shape)
            for n, m, h, w in np.ndindex(*self.out_shape):
                bias_grad[m] += delta[n][m][h][w]
                if rb:
                    rb.term((m,), ("delta", (n, m, h, w), delta[n][m][h][w]))
            result["bias"] = self.num.array(bias_grad)
        return result

    def rules(self, n):
        N, C, H, W = self.in_shape
        _, M, Ho, Wo = self.out_shape
        kshape = self.params["kernel"].shape
        _, out_per_group, kh, kw = kshape
        in_per_group = C // self.groups
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        hpos = position("i", H, "u", kh, stride=sh, pad=ph, flip=self.flip, base=n.base, dilation=dh)
        wpos = position("j", W, "v", kw, stride=sw, pad=pw, flip=self.flip, base=n.base, dilation=dw)
        if self.groups == 1:
            m, where = "o", ""
        else:
            # output map m of input map c: group ⌊c/in_per_group⌋, its o-th map (in the index base)
            c = "(c−1)" if n.base else "c"
            group = c if in_per_group == 1 else f"⌊{c}/{in_per_group}⌋"
            if out_per_group == 1:
                m_text = ("c" if in_per_group == 1 else f"{group}+1") if n.base else group
            else:
                m_text = f"{out_per_group}{group}+o"
            m, where = "m", f", m = {m_text} (the output map{'s' * (out_per_group > 1)} of c's group)"
        k = ref(n.param("kernel"), kshape, "couv")
        xin = ref(n.x, self.in_shape, "ncij")
        landed = ref(n.delta, self.out_shape, ("n", m, hpos, wpos))
        taps = [letter for letter, size in (("c", C), ("i", H), ("j", W), ("u", kh), ("v", kw)) if size > 1]
        over = f"over {', '.join(taps)} " if taps else ""
        at = [sym(f"{pos} = {letter}") for pos, letter, size in ((hpos, "h", Ho), (wpos, "w", Wo)) if size > 1]
        where_at = []
        for condition in at:
            where_at += [" and " if where_at else "with ", condition]
        where_at += [" "] * bool(at)
        cropped = f" (cropped by the padding {ph},{pw})" if any(self.padding) else ""
        bias = "bias" in self.params
        b = [ref(n.param("bias"), (M,), m)] if bias else []
        rules = {
            "out": eq(ref(n.out, self.out_shape, ("n", m, "h", "w")),
                      Sum((), seq(over, *where_at,
                                  "of ", add(prod(k, xin), *b), ": each ", Ref(n.x),
                                  f" element times the kernel, added into the output{cropped}{where}"))),
            "kernel": eq(ref(n.grad("kernel"), kshape, "couv"), sums(prod(xin, landed), ("n", N), ("i", H), ("j", W))),
            "in": eq(ref(n.x_delta, self.in_shape, "ncij"),
                     seq(sums(prod(landed, k), ("o", out_per_group), ("u", kh), ("v", kw)), "  (zero outside ",
                         Ref(n.delta), "): the correlation of ", Ref(n.delta), f" with the kernel{where}")),
        }
        if bias:
            rules["bias"] = eq(ref(n.grad("bias"), (M,), "o"),
                               sums(ref(n.delta, self.out_shape, "nohw"), ("n", N), ("h", Ho), ("w", Wo)))
        return rules
