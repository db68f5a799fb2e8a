"""Every layer type, each in one class with its forward and backward loops side by side.

The loops are plain scalar loops over indices on purpose: each printed number is one loop
body, and a reader can hold it against the formula in the docstring.  Arithmetic is only
`+ - * /` and comparisons on the elements, so exact numbers (Fractions) could flow through
the same loops.  Next to each line that computes stands `if rec: rec.term(...)`, which
records the term's factors for the elements someone will read; it costs nothing otherwise.

Shapes are canonical: feature maps [N][C][H][W], dense values [N][features], kernels
[out][in/groups][kh][kw], dense weights [out][in].  `LAYERS` at the bottom is the one
table that maps a scenario's `type:` to its class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from .spec import Spec, shape_error, shape_words
from .tensors import display_index, fits, format_index


# --- helpers for the one-line rules ------------------------------------------------------

def ref(name: str, shape, letters) -> str:
    """`name[letters]` with the letters of length-1 axes left out, as values are shown."""
    shown = [str(letter) for letter, size in zip(letters, shape) if size != 1]
    return f"{name}[{','.join(shown)}]" if shown else name


def sums(*pairs) -> str:
    """`Σ_i Σ_j ` for the (letter, range) pairs whose range is more than one value."""
    return "".join(f"Σ_{letter} " for letter, size in pairs if size > 1)


def position(out_letter: str, out_size: int, tap_letter: str, taps: int, *, stride: int, pad: int,
             flip: bool, base: int) -> str:
    """The input index a kernel tap reads, written in the scenario's index base: `2i+u−1`
    for stride 2 and padding 1, `i+4−u` for a turned 5-tap kernel.  An index with a single
    value (a 1×1 output, a 1-tap kernel) is folded into the constant."""
    # 0-based: h = stride·i + u − pad, or stride·i + (taps−1−u) − pad when the kernel is turned;
    # with every index counted from `base`, the constant shifts by the bases it absorbs.
    const = (taps - 1 + 2 * base if flip else 0) - pad - stride * base
    out_part = tap_part = ""
    if out_size > 1:
        out_part = f"{stride}{out_letter}" if stride != 1 else out_letter
    else:
        const += stride * base
    if taps > 1:
        tap_part = ("−" if flip else "+") + tap_letter
    else:
        const += -base if flip else base
    const_part = f"+{const}" if const > 0 else f"−{-const}" if const < 0 else ""
    text = out_part + (const_part + tap_part if flip else tap_part + const_part)
    return text.lstrip("+") or "0"


def _letters_text(letters, sizes) -> str:
    """`(i,j) ` for the letters whose range is more than one value."""
    kept = [letter for letter, size in zip(letters, sizes) if size > 1]
    return f"({','.join(kept)}) " if kept else ""


def nested(shape, fill=0):
    """A nested list of zeros, the accumulator of a backward loop."""
    if not shape:
        return fill
    return [nested(shape[1:], fill) for _ in range(shape[0])]


def as_array(values) -> np.ndarray:
    return np.array(values, dtype=float)


@dataclass
class Names:
    """The traced names one layer's steps read and write (built by the plan)."""
    layer: str
    x: str          # this layer's (first) input: the layer before's out, `from`'s, or "input"
    x_delta: str    # the error at that input: "c1.delta", "input.delta"
    base: int = 0   # conventions.index_base, for indices written into notes
    xs: tuple = ()          # every value it reads, for layers that read several (add, concat)
    x_deltas: tuple = ()    # their errors, in the same order

    @property
    def out(self):
        return f"{self.layer}.out"

    @property
    def delta(self):
        return f"{self.layer}.delta"

    def param(self, role):
        return f"{self.layer}.{role}"

    def grad(self, role):
        return f"{self.layer}.grad.{role}"

    def new(self, role):
        return f"{self.layer}.new.{role}"


@dataclass
class BuildContext:
    """What a layer needs to know while it is read from the scenario."""
    in_shape: tuple
    conventions: object
    previous: str                    # name and type of the layer before, for messages
    rng: object = None               # numpy Generator when the scenario has `init`
    in_shapes: tuple = ()            # the shape of every value read, for layers that read several
    sources: tuple = ()              # and their descriptions ("conv c1", "the input")


class Layer:
    type = ""
    keys: frozenset = frozenset()
    param_roles: tuple = ()
    in_delta_reads: tuple = ("delta",)     # roles the error at the input is computed from
    # roles each parameter's gradient is computed from: the delta, times the input for a weight
    grad_reads = {"kernel": ("delta", "in"), "weights": ("delta", "in"), "bias": ("delta",)}
    elementwise = False                    # an activation: it reads one value, or one vector, at a time
    merge = False                          # reads several values (`from: [a, b]`): forward gets a list
    decides = False                        # compares its input (relu's kink, max-pool's winner)
    # The noise bound of each element of the input the layer is now reading (layers.EPS),
    # nested like x.tolist(), set by the engine for the layers that decide; None: exact.
    floor = None

    def __init__(self, name: str, in_shape: tuple):
        self.name = name
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(in_shape)
        self.params: dict = {}
        self.origins: dict = {}      # role -> where the parameter's values came from, in words

    @classmethod
    def build(cls, name: str, spec: Spec, ctx: BuildContext) -> "Layer":
        return cls(name, ctx.in_shape)

    @property
    def param_count(self) -> int:
        return sum(p.size for p in self.params.values())

    def multiply_adds(self) -> int:
        """How many scalar operations forward + backward take (for the size limit)."""
        return 3 * math.prod(self.out_shape)

    def notes(self, x, n: Names) -> list:
        """Remarks on the forward step a reader should not miss (a max-pool tie)."""
        return []

    def forward(self, x, p, rec):
        raise NotImplementedError

    def backward(self, x, out, delta, p, recs) -> dict:
        raise NotImplementedError

    def rules(self, n: Names) -> dict:
        raise NotImplementedError

    def in_delta_names(self, roles: dict, k: int = 0) -> tuple:
        """The traced names the error at input k is computed from."""
        return tuple(roles[r] for r in self.in_delta_reads)
    def noise_terms(self) -> int:
        """The most terms one element of the forward or backward pass sums."""
        return 1

    def forward_noise(self, x, p, out, noise: dict):
        """The noise bound of each element of `out` = forward(x, p), from `noise` (role ->
        bound array: "in" and each parameter): the same loops run on magnitudes
        (`noise_bound`).  Right for the layers whose elements are sums of products (conv,
        dense, pools' averages, flatten); the others override it."""
        grown = self.forward(abs(x) + noise["in"], {r: abs(v) + noise[r] for r, v in p.items()}, None)
        exact = not any(bound.any() for bound in noise.values())
        plain = grown if exact else self.forward(abs(x), {r: abs(v) for r, v in p.items()}, None)
        return noise_bound(grown, plain, self.noise_terms())

    def backward_noise(self, x, out, delta, p, noise: dict) -> dict:
        """The noise bound of each element of backward(...), as `forward_noise` (noise also
        holds "out" and "delta").  A layer that decides on its input (max-pool's routing)
        runs on the input itself, so that each error goes where the real pass sent it."""
        recs = {role: None for role in ("in",) + self.param_roles}
        xs = (x, x) if self.decides else (abs(x) + noise["in"], abs(x))
        grown = self.backward(xs[0], abs(out) + noise["out"], abs(delta) + noise["delta"],
                              {r: abs(v) + noise[r] for r, v in p.items()}, recs)
        plain = self.backward(xs[1], abs(out), abs(delta), {r: abs(v) for r, v in p.items()}, recs)
        return {role: noise_bound(grown[role], plain[role], self.noise_terms()) for role in grown}

    def roles(self, n: Names) -> dict:
        """Which traced name each role in a recorded term stands for."""
        roles = {"in": n.x, "out": n.out, "delta": n.delta}
        roles.update({role: n.param(role) for role in self.param_roles})
        return roles


# Every value is a Python number in the loops; a tensor past this many elements would not
# fit in memory as such, so it is refused even with --no-size-limit.
MAX_TENSOR_ELEMENTS = 10_000_000


def _draw(ctx: BuildContext, shape, fan_in, fan_out):
    # Glorot & Bengio's uniform bound, as Zhang 2016 eqs. 1-3: ±sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return ctx.rng.uniform(-bound, bound, size=shape)


def _parameter(spec: Spec, key: str, shape, ctx: BuildContext, fans, what: str):
    """A parameter as written (length-1 axes may be left out), or drawn by `init`."""
    if key in spec:
        values = spec.tensor(key, what=what)
        if not fits(values.shape, shape):
            raise shape_error(spec.doc, spec.path + (key,), what, values.shape, shape)
        return values.reshape(shape)
    if ctx.rng is None:
        raise spec.error(None, f"{what} {'are' if what.endswith('s') else 'is'} not given and the scenario "
                               "has no `init`",
                         f"write `{key}:` or add `init: {{scheme: glorot_uniform, seed: 0}}`")
    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise spec.error(None, f"{what} would hold {math.prod(shape):,} numbers, more than the "
                               f"{MAX_TENSOR_ELEMENTS:,} bptrace holds in one tensor")
    return _draw(ctx, shape, *fans)


def _bias(spec: Spec, count: int, what: str, each: str = ""):
    if "bias" not in spec:
        return np.zeros(count)
    values = spec.tensor("bias", what=what)
    if values.ndim == 0:
        return np.full(count, float(values))
    if not fits(values.shape, (count,)):
        raise spec.error("bias", f"{what} should be {shape_words((count,))}{each}, found {shape_words(values.shape)}",
                         "or one number for all of them")
    return values.reshape(count)


def _pair(spec: Spec, key: str, default, *, minimum: int, signal: bool, across: int):
    """A window size, stride or padding: one number, or [rows, columns].  On a 1-D signal
    (a map one row high) one number applies along the signal only, and the row axis takes
    `across` (size and stride 1, padding 0)."""
    value = spec.pair(key, default, minimum=minimum)
    if signal and key in spec and not isinstance(spec.get(key), list):
        return (across, value[1])
    return value


# --- float noise ------------------------------------------------------------------------
# Every computed element carries a bound on its float noise, how far float arithmetic may
# have taken it from the value on paper.  A number written in the file (or drawn by `init`,
# rounded, or given) has none: it is the value.  A layer's bound comes from the terms that
# made each element: the bounds of what it read, carried through (`noise_bound`), plus
# (terms + 3)·EPS of the terms' magnitudes, for one rounding per product and per sum and
# the conversion of the written factors to binary.  Two values within their bounds are
# equal on paper (a max-pool tie: 0.1 + 0.2 against 0.3), a value within its bound of 0 is
# 0 (relu's flat side), and rounding by hand rounds the paper value (rounding.py).

EPS = 2.0 ** -52        # machine epsilon, twice the relative error of one float operation
TINY = 2.0 ** -1074     # the absolute error of an operation that underflows


def noise_bound(grown, plain, terms: int):
    """The noise bound of a sum from two runs of it: `grown` on the magnitudes of what it
    read plus their bounds, `plain` on the magnitudes alone.  grown − plain is the read
    noise carried through (Σ |k|·e_x + e_k·|x| + e_k·e_x for products k·x), and
    (terms + 3)·EPS·grown the sum's own rounding."""
    return grown - plain + (terms + 3) * (EPS * grown + TINY)


def _out_size(size, window, stride, padding) -> tuple:
    """How many positions a window takes along each axis of a (zero-padded) input."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, window, stride, padding))


def _need_map(spec: Spec, ctx: BuildContext, what: str):
    if len(ctx.in_shape) != 4:
        raise spec.error("type", f"{what} needs a feature map, but {ctx.previous} makes "
                                 f"{ctx.in_shape[1]} features")


def _makes(ctx: BuildContext, amount: str) -> str:
    """"conv c1 makes 3 maps" or "the input has 3 maps", for messages about a mismatch."""
    return f"the input has {amount}" if ctx.previous == "the input" else f"{ctx.previous} makes {amount}"


def _too_large(spec: Spec, ctx: BuildContext, key: str, what: str, window, padding):
    """A kernel or pooling window that does not fit its (padded) input, or None."""
    (kh, kw), (ph, pw) = window, padding
    _, _, H, W = ctx.in_shape
    if kh <= H + 2 * ph and kw <= W + 2 * pw:
        return None
    padded = f"{H + 2 * ph}×{W + 2 * pw} padded input ({H}×{W} with padding {ph},{pw})" if ph or pw \
        else f"{H}×{W} input"
    source = "" if ctx.previous == "the input" else f" (the output of {ctx.previous})"
    return spec.error(key, f"the {kh}×{kw} {what} is larger than its {padded}{source}",
                      "use a smaller window, or more padding")


# --- convolution ------------------------------------------------------------------------

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
            written = spec.tensor("kernel", what="the kernel")
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


# --- pooling ----------------------------------------------------------------------------

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


# --- activations ------------------------------------------------------------------------

class Activation(Layer):
    """out = f(x) element by element; backward: x.delta = delta · f′, with f′ written in
    the terms a student uses (σ′ = out·(1 − out), as in seed 001 and Zhang eq. 37)."""
    symbol = "f"
    in_delta_reads = ("delta", "out")
    zero = 0.0     # the noise bound of the element at hand (`floor`): within it of 0 is 0
    elementwise = True
    rounds = 2     # f's own float error, in EPS of |out| (exp and tanh are within an ulp)

    def f(self, z):
        raise NotImplementedError

    def slope(self, z, y):
        """f′ at this element as factors (label role, value): the activation's own local
        derivative."""
        raise NotImplementedError

    slope_text = "f′"

    def floors(self, size) -> list:
        """Each input element's noise bound, flat (zeros when the input is exact)."""
        return [0.0] * size if self.floor is None else np.reshape(self.floor, -1).tolist()

    def forward(self, x, p, rec):
        shape = x.shape
        x = x.reshape(-1).tolist()
        out = []
        for z, zero in zip(x, self.floors(len(x))):
            self.zero = zero
            out.append(self.f(z))
        if rec:
            for k, z in enumerate(x):
                at = np.unravel_index(k, shape)
                rec.apply(tuple(int(a) for a in at), self.symbol, ("in", tuple(int(a) for a in at), z))
        return as_array(out).reshape(shape)

    def backward(self, x, out, delta, p, recs):
        shape = x.shape
        rec = recs["in"]
        floors = self.floors(x.size)
        x, out, delta = x.reshape(-1).tolist(), out.reshape(-1).tolist(), delta.reshape(-1).tolist()
        x_delta = []
        for k, (z, y, d) in enumerate(zip(x, out, delta)):
            self.zero = floors[k]
            factors = self.slope(z, y)
            total = d
            for _, value in factors:
                total = total * value
            x_delta.append(total)
            if rec:
                at = tuple(int(a) for a in np.unravel_index(k, shape))
                rec.term(at, ("delta", at, d), *((role, at if role in ELEMENT_ROLES else None, value)
                                                  for role, value in factors))
        return {"in": as_array(x_delta).reshape(shape)}

    def forward_noise(self, x, p, out, noise):
        """f is monotone: the true output lies between f(z − e) and f(z + e)."""
        self.zero = 0.0                   # f itself, without the noise floor
        bound = [max(self.f(z + e) - y, y - self.f(z - e)) + self.rounds * (EPS * abs(y) + TINY)
                 for z, e, y in zip(x.reshape(-1).tolist(), noise["in"].reshape(-1).tolist(), out.reshape(-1).tolist())]
        return as_array(bound).reshape(x.shape)

    def backward_noise(self, x, out, delta, p, noise):
        """delta times the slope's factors, each factor's bound that of the value it is
        (+ EPS for 1 − out, 1 + out); constant factors (relu's 1 or 0) are exact."""
        floors = self.floors(x.size)
        e_in, e_out, e_delta = (noise[role].reshape(-1).tolist() for role in ("in", "out", "delta"))
        bound = []
        for k, (z, y, d) in enumerate(zip(x.reshape(-1).tolist(), out.reshape(-1).tolist(),
                                          delta.reshape(-1).tolist())):
            self.zero = floors[k]
            grown, plain = abs(d) + e_delta[k], abs(d)
            for role, value in self.slope(z, y):
                e = e_in[k] if role == "in" else e_out[k] + EPS if role in ELEMENT_ROLES else 0.0
                grown, plain = grown * (abs(value) + e), plain * abs(value)
            bound.append(noise_bound(grown, plain, 2))
        return {"in": as_array(bound).reshape(x.shape)}

    def roles(self, n):
        roles = super().roles(n)
        roles.update({"1 − out": f"1 − {n.out}", "1 + out": f"1 + {n.out}"})
        return roles

    def rules(self, n):
        return {
            "out": f"{n.out} = {self.symbol}({n.x})",
            "in": f"{n.x_delta} = {n.delta} ⊙ {self.slope_text.format(out=n.out, x=n.x)}",
        }


# slope factors that are values of this element; any other label is a constant such as "1 (x > 0)"
ELEMENT_ROLES = ("out", "1 − out", "1 + out", "in")


def _share(mine, others) -> float:
    """exp(mine) / (exp(mine) + Σ exp(others)), shifted by the largest exponent as softmax
    is: nothing overflows, and only a share that is itself below the smallest float underflows."""
    top = max([mine] + others)
    part = math.exp(mine - top)
    return part / (part + sum(math.exp(z - top) for z in others))


def _sigmoid(z):
    # the two forms avoid overflow of exp for large |z|
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)
    return e / (1 + e)


class Sigmoid(Activation):
    type, symbol = "sigmoid", "σ"
    slope_text = "{out} ⊙ (1 − {out})"

    def f(self, z):
        return _sigmoid(z)

    def slope(self, z, y):
        return [("out", y), ("1 − out", 1 - y)]


class Tanh(Activation):
    type, symbol = "tanh", "tanh"
    slope_text = "(1 − {out}) ⊙ (1 + {out})"

    def f(self, z):
        return math.tanh(z)

    def slope(self, z, y):
        # 1 − tanh² written as (1 − y)(1 + y): two factors a reader can check
        return [("1 − out", 1 - y), ("1 + out", 1 + y)]


class Relu(Activation):
    type, symbol = "relu", "relu"
    in_delta_reads = ("delta", "in")
    decides = True
    rounds = 0     # z or 0: nothing is rounded
    slope_text = "[{x} > 0]"

    def f(self, z):
        return z if z > self.zero else 0 * z

    def slope(self, z, y):
        # relu′(0) = 0, as PyTorch
        return [("1 (x > 0)" if z > self.zero else "0 (x ≤ 0)", 1 if z > self.zero else 0)]


class LeakyRelu(Activation):
    type, symbol = "leaky_relu", "leaky_relu"
    in_delta_reads = ("delta", "in")
    decides = True
    rounds = 1     # slope · z: one product
    keys = frozenset({"slope"})

    @classmethod
    def build(cls, name, spec, ctx):
        layer = cls(name, ctx.in_shape)
        layer.negative_slope = spec.number("slope", 0.01)
        return layer

    @property
    def slope_text(self):
        return f"(1 if {{x}} > 0 else {self.negative_slope:g})"

    def f(self, z):
        return z if z > self.zero else self.negative_slope * z

    def slope(self, z, y):
        return [("1 (x > 0)", 1)] if z > self.zero else [(f"{self.negative_slope:g} (x ≤ 0)", self.negative_slope)]


class Identity(Activation):
    type, symbol = "identity", "identity"
    slope_text = "1"
    rounds = 0

    def f(self, z):
        return z

    def slope(self, z, y):
        return []


class Softmax(Layer):
    """out[n,k] = exp(x[n,k]) / Σ_j exp(x[n,j]) over the features (or, on a feature map,
    over the channels at each position).  Backward: x.delta[k] = out[k]·(delta[k] − Σ_j
    delta[j]·out[j])."""
    type = "softmax"
    elementwise = True
    in_delta_reads = ("delta", "out")

    def _groups(self):
        """Index lists, one per softmax: the features of a sample, or the channels of a position."""
        shape = self.in_shape
        if len(shape) == 2:
            return [[(n, k) for k in range(shape[1])] for n in range(shape[0])]
        N, C, H, W = shape
        return [[(n, c, h, w) for c in range(C)] for n, h, w in np.ndindex(N, H, W)]

    def forward(self, x, p, rec):
        values = x.tolist()
        get = (lambda idx: values[idx[0]][idx[1]]) if len(self.in_shape) == 2 else \
            (lambda idx: values[idx[0]][idx[1]][idx[2]][idx[3]])
        out = np.zeros(self.in_shape)
        for group in self._groups():
            top = max(get(idx) for idx in group)  # shifting by the max keeps exp finite; the ratio is unchanged
            exps = [math.exp(get(idx) - top) for idx in group]
            total = sum(exps)
            for idx, e in zip(group, exps):
                out[idx] = e / total
                if rec:
                    rec.apply(idx, "softmax", ("in", idx, get(idx)))
        return out

    def backward(self, x, out, delta, p, recs):
        rec = recs["in"]
        x_delta = np.zeros(self.in_shape)
        for group in self._groups():
            dot = sum(delta[idx] * out[idx] for idx in group)
            for idx in group:
                x_delta[idx] = out[idx] * (delta[idx] - dot)
                if rec:
                    rec.term(idx, ("out", idx, out[idx]), ("delta", idx, delta[idx]))
                    for j in group:
                        rec.term(idx, ("out", idx, out[idx]), ("−out", j, -out[j]), ("delta", j, delta[j]))
        return {"in": x_delta}

    def forward_noise(self, x, p, out, noise):
        """out[k] = exp(x[k]) / Σ_j exp(x[j]) is least with x[k] moved down by its bound and
        every other x[j] up by its, and greatest the other way round; plus the rounding of
        exp, the sum and the division."""
        e, bound = noise["in"], np.zeros(self.in_shape)
        for group in self._groups():
            for k in group:
                others = [j for j in group if j != k]
                low = _share(x[k] - e[k], [x[j] + e[j] for j in others])
                high = _share(x[k] + e[k], [x[j] - e[j] for j in others])
                bound[k] = max(high - out[k], out[k] - low) + (len(group) + 3) * (EPS * out[k] + TINY)
        return bound

    def backward_noise(self, x, out, delta, p, noise):
        e_out, e_delta = noise["out"], noise["delta"]
        bound = np.zeros(self.in_shape)
        for group in self._groups():
            grown_dot = sum((abs(delta[j]) + e_delta[j]) * (out[j] + e_out[j]) for j in group)
            plain_dot = sum(abs(delta[j]) * out[j] for j in group)
            for idx in group:
                grown = (out[idx] + e_out[idx]) * (abs(delta[idx]) + e_delta[idx] + grown_dot)
                bound[idx] = noise_bound(grown, out[idx] * (abs(delta[idx]) + plain_dot), len(group) + 2)
        return {"in": bound}

    def roles(self, n):
        roles = super().roles(n)
        roles["−out"] = f"−{n.out}"
        return roles

    def rules(self, n):
        return {
            "out": f"{ref(n.out, self.out_shape, 'nk')} = exp({n.x}[k]) / Σ_j exp({n.x}[j])",
            "in": f"{n.x_delta}[k] = {n.out}[k] · ({n.delta}[k] − Σ_j {n.delta}[j] · {n.out}[j])",
        }


# --- flatten and dense ------------------------------------------------------------------

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
        return as_array(out)

    def backward(self, x, out, delta, p, recs):
        delta = delta.tolist()
        x_delta = nested(self.in_shape)
        rec = recs["in"]
        for n, c, i, j in np.ndindex(*self.in_shape):
            k = self.position(c, i, j)
            x_delta[n][c][i][j] = delta[n][k]
            if rec:
                rec.term((n, c, i, j), ("delta", (n, k), delta[n][k]))
        return {"in": as_array(x_delta)}

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
            "out": f"{flat} = {cell}  (each map {order}{', maps one after another' if C > 1 else ''})",
            "in": f"{ref(n.x_delta, self.in_shape, 'ncij')} = {ref(n.delta, self.out_shape, ('n', at))}  (the same order, undone)",
        }


class Dense(Layer):
    """out[n,o] = Σ_k weights[o,k] · x[n,k] + bias[o].  Backward: x.delta = weightsᵀ·delta
    (Zhang eq. 30), grad.weights = delta·xᵀ summed over the batch (eq. 19), grad.bias =
    delta summed over the batch (eq. 24)."""
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
            written = spec.tensor("weights", what="the weights")
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
        layer.params["bias"] = _bias(spec, shape[0], "the bias", " (one per output)")
        layer.out_shape = (N, shape[0])
        return layer

    def multiply_adds(self):
        return 3 * int(np.prod(self.out_shape)) * self.in_shape[1]

    def noise_terms(self):
        (N, O), F = self.out_shape, self.in_shape[1]
        return max(F + 1, N, O)

    def forward(self, x, p, rec):
        x, weights, bias = x.tolist(), p["weights"].tolist(), p["bias"].tolist()
        out = nested(self.out_shape)
        for n, o in np.ndindex(*self.out_shape):
            total = 0
            for k in range(self.in_shape[1]):
                total += weights[o][k] * x[n][k]
                if rec:
                    rec.term((n, o), ("weights", (o, k), weights[o][k]), ("in", (n, k), x[n][k]))
            total += bias[o]
            if rec:
                rec.term((n, o), ("bias", (o,), bias[o]))
            out[n][o] = total
        return as_array(out)

    def backward(self, x, out, delta, p, recs):
        x, weights, delta = x.tolist(), p["weights"].tolist(), delta.tolist()
        weights_grad = nested(p["weights"].shape)
        bias_grad = nested(p["bias"].shape)
        x_delta = nested(self.in_shape)
        rw, rb, rx = recs["weights"], recs["bias"], recs["in"]
        for n, o in np.ndindex(*self.out_shape):
            d = delta[n][o]
            bias_grad[o] += d
            if rb:
                rb.term((o,), ("delta", (n, o), d))
            for k in range(self.in_shape[1]):
                weights_grad[o][k] += d * x[n][k]
                x_delta[n][k] += weights[o][k] * d
                if rw:
                    rw.term((o, k), ("delta", (n, o), d), ("in", (n, k), x[n][k]))
                if rx:
                    rx.term((n, k), ("weights", (o, k), weights[o][k]), ("delta", (n, o), d))
        return {"in": as_array(x_delta), "weights": as_array(weights_grad), "bias": as_array(bias_grad)}

    def rules(self, n):
        N, O = self.out_shape
        F = self.in_shape[1]
        w = ref(n.param("weights"), (O, F), "ok")
        d = ref(n.delta, self.out_shape, "no")
        xin = ref(n.x, self.in_shape, "nk")
        return {
            "out": f"{ref(n.out, self.out_shape, 'no')} = {sums(('k', F))}{w} · {xin} + {ref(n.param('bias'), (O,), 'o')}",
            "weights": f"{ref(n.grad('weights'), (O, F), 'ok')} = {sums(('n', N))}{d} · {xin}",
            "bias": f"{ref(n.grad('bias'), (O,), 'o')} = {sums(('n', N))}{d}",
            "in": f"{ref(n.x_delta, self.in_shape, 'nk')} = {sums(('o', O))}{w} · {d}",
        }


# the merge layers build on Layer above; imported here so that LAYERS is the one registry
from .merge import Add, Concat, Multiply  # noqa: E402

LAYERS = {cls.type: cls for cls in (Conv, MaxPool, AvgPool, Sigmoid, Tanh, Relu, LeakyRelu, Identity,
                                    Softmax, Flatten, Dense, Add, Multiply, Concat)}
