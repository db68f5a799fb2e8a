"""Convolution: `conv`."""
from __future__ import annotations

import math
from itertools import product

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
    _too_large,
    as_array,
    nested,
    position,
    ref,
    sums,
)


class Conv(Layer):
    """out[n,o,i,j] = Σ_c Σ_u Σ_v kernel[o,c,u,v] · x[n, c, i·sh+u−ph, j·sw+v−pw] + bias[o]

    (correlation, as PyTorch).  With `conventions.kernel: convolution` the kernel is turned
    by 180° first, so tap (u,v) reads x[i·sh+(kh−1−u)−ph, ...]: Zhang 2016 eq. 5's
    I(i−u, j−v) with the kernel indexed from its corner.  Positions outside the input are
    the zero padding and add nothing.
    """
    type = "conv"
    keys = frozenset({"kernel", "bias", "stride", "padding", "groups", "out_channels", "size"})
    param_roles = ("kernel", "bias")
    in_delta_reads = ("delta", "kernel")

    @classmethod
    def build(cls, name, spec, ctx):
        _need_map(spec, ctx, "conv")
        layer = cls(name, ctx.in_shape)
        N, C, H, W = ctx.in_shape
        layer.stride = _pair(spec, "stride", (1, 1), minimum=1, signal=H == 1, across=1)
        layer.padding = _pair(spec, "padding", (0, 0), minimum=0, signal=H == 1, across=0)
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
                               (kh, kw), layer.padding)
        if too_large:
            raise too_large
        area = kh * kw
        layer.params["kernel"] = _parameter(spec, "kernel", shape, ctx,
                                            (in_per_group * area, out_channels * area), "the kernel")
        layer.params["bias"] = _bias(spec, out_channels, "the bias", " (one per output map)")
        layer.out_shape = (N, out_channels) + _out_size((H, W), (kh, kw), layer.stride, layer.padding)
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
        _, in_per_group, kh, kw = self.params["kernel"].shape
        out_per_group = self.out_shape[1] // self.groups
        first = (o // out_per_group) * in_per_group
        (sh, sw), (ph, pw) = self.stride, self.padding
        _, _, H, W = self.in_shape
        for c, u, v in product(range(in_per_group), range(kh), range(kw)):
            # which input cell tap (u, v) reads: flipped under the convolution convention
            h = i * sh + ((kh - 1 - u) if self.flip else u) - ph
            w = j * sw + ((kw - 1 - v) if self.flip else v) - pw
            if 0 <= h < H and 0 <= w < W:
                yield c, first + c, u, v, h, w

    def forward(self, x, p, rec):
        x, kernel, bias = x.tolist(), p["kernel"].tolist(), p["bias"].tolist()
        out = nested(self.out_shape)
        for n, o, i, j in np.ndindex(*self.out_shape):
            total = 0
            for ck, c, u, v, h, w in self.window(o, i, j):
                total += kernel[o][ck][u][v] * x[n][c][h][w]
                if rec:
                    rec.term((n, o, i, j), ("kernel", (o, ck, u, v), kernel[o][ck][u][v]),
                             ("in", (n, c, h, w), x[n][c][h][w]))
            total += bias[o]
            if rec:
                rec.term((n, o, i, j), ("bias", (o,), bias[o]))
            out[n][o][i][j] = total
        return as_array(out)

    def backward(self, x, out, delta, p, recs):
        # The chain rule through out[n,o,i,j] = Σ kernel[o,c,u,v]·x[n,c,h,w] + bias[o]:
        # every output element sends delta·x to the kernel tap that made it, delta·kernel
        # to the input cell it read, and delta to the bias.  Summing these scattered
        # pieces is the 'full convolution' of the delta with the turned kernel.
        x, kernel, delta = x.tolist(), p["kernel"].tolist(), delta.tolist()
        kernel_grad = nested(p["kernel"].shape)
        bias_grad = nested(p["bias"].shape)
        x_delta = nested(self.in_shape)
        rk, rb, rx = recs["kernel"], recs["bias"], recs["in"]
        for n, o, i, j in np.ndindex(*self.out_shape):
            d = delta[n][o][i][j]
            bias_grad[o] += d
            if rb:
                rb.term((o,), ("delta", (n, o, i, j), d))
            for ck, c, u, v, h, w in self.window(o, i, j):
                kernel_grad[o][ck][u][v] += d * x[n][c][h][w]
                x_delta[n][c][h][w] += d * kernel[o][ck][u][v]
                if rk:
                    rk.term((o, ck, u, v), ("delta", (n, o, i, j), d), ("in", (n, c, h, w), x[n][c][h][w]))
                if rx:
                    rx.term((n, c, h, w), ("delta", (n, o, i, j), d), ("kernel", (o, ck, u, v), kernel[o][ck][u][v]))
        return {"in": as_array(x_delta), "kernel": as_array(kernel_grad), "bias": as_array(bias_grad)}

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
        (sh, sw), (ph, pw) = self.stride, self.padding
        _, _, Ho, Wo = self.out_shape
        return (channel,
                position("i", Ho, "u", kh, stride=sh, pad=ph, flip=self.flip, base=base),
                position("j", Wo, "v", kw, stride=sw, pad=pw, flip=self.flip, base=base))

    def rules(self, n):
        N, O, Ho, Wo = self.out_shape
        kshape = self.params["kernel"].shape
        _, in_per_group, kh, kw = kshape
        channel, hpos, wpos = self._letters(n.base)
        k = ref(n.param("kernel"), kshape, "ocuv")
        xin = ref(n.x, self.in_shape, ("n", channel, hpos, wpos))
        b = ref(n.param("bias"), (O,), "o")
        d = ref(n.delta, self.out_shape, "noij")
        taps = sums(("c", in_per_group), ("u", kh), ("v", kw))
        outputs = sums(("n", N), ("i", Ho), ("j", Wo))
        padded = " (zero outside the input)" if any(self.padding) else ""
        turned = "kernel as written" if self.flip else "kernel turned 180°"
        return {
            "out": f"{ref(n.out, self.out_shape, 'noij')} = {taps}{k} · {xin} + {b}{padded}",
            "kernel": f"{ref(n.grad('kernel'), kshape, 'ocuv')} = {outputs}{d} · {xin}",
            "bias": f"{ref(n.grad('bias'), (O,), 'o')} = {outputs}{d}",
            "in": f"{ref(n.x_delta, self.in_shape, ('n', 'c', 'h', 'w'))} = Σ {d} · {k} over every output "
                  f"{_letters_text('ij', (Ho, Wo))}and tap {_letters_text('uv', (kh, kw))}that read it, "
                  f"i.e. the zero-padded {n.delta} slid under the {turned}",
        }
