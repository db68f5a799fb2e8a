"""What every layer type shares: the base class, the names a layer's steps read and write,
how parameters are read or drawn, and the float-noise bounds.

The loops of each layer type are plain scalar loops over indices on purpose: each printed
number is one loop body, and a reader can hold it against the formula in the docstring.
Next to each line that computes stands `if rec: rec.term(...)`, which records the term's
factors for the elements someone will read; it costs nothing otherwise.

Shapes are canonical: feature maps [N][C][H][W], dense values [N][features], kernels
[out][in/groups][kh][kw], dense weights [out][in].
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import reduce
from itertools import chain
from operator import add, itemgetter

import numpy as np

from ..notation import Ref, Sum, node
from ..numbers import FLOAT
from ..spec import Spec, shape_error, shape_words
from ..tensors import every, fits

# --- helpers for the rules (bptrace.notation) ------------------------------------------

def ref(name: str, shape, letters) -> Ref:
    """`name[letters]` with the letters of length-1 axes left out, as values are shown."""
    return Ref(name, tuple(str(letter) for letter, size in zip(letters, shape) if size != 1))


def sums(body, *pairs):
    """`Σ_i Σ_j body` over the (letter, range) pairs whose range is more than one value
    (the body alone when none is)."""
    letters = tuple(letter for letter, size in pairs if size > 1)
    return Sum(letters, node(body)) if letters else node(body)


def position(out_letter: str, out_size: int, tap_letter: str, taps: int, *, stride: int, pad: int,
             flip: bool, base: int, dilation: int = 1) -> str:
    """The input index a kernel tap reads, written in the scenario's index base: `2i+u−1`
    for stride 2 and padding 1, `i+4−u` for a turned 5-tap kernel, `i+2u` for dilation 2.
    An index with a single value (a 1×1 output, a 1-tap kernel) is folded into the constant."""
    # 0-based: h = stride·i + d·u − pad, or stride·i + d·(taps−1−u) − pad when the kernel is
    # turned; with every index counted from `base`, the constant shifts by the bases it absorbs.
    d = dilation
    const = (d * (taps - 1) + d * base + base if flip else base - d * base) - pad - stride * base
    out_part = tap_part = ""
    if out_size > 1:
        out_part = f"{stride}{out_letter}" if stride != 1 else out_letter
    else:
        const += stride * base
    if taps > 1:
        tap_part = ("−" if flip else "+") + (f"{d}{tap_letter}" if d != 1 else tap_letter)
    else:
        const += -d * base if flip else d * base
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
    if len(shape) == 1:
        return [fill] * shape[0]        # a number is never changed in place: one may fill the row
    return [nested(shape[1:], fill) for _ in range(shape[0])]


# add_up(terms, start=0): start + t₁ + t₂ + ..., added one after another, left to right, as a
# `total += term` loop adds them, in the terms' own arithmetic (floats, and equally
# fractions or symbols).  Before Python 3.12 the builtin sum() does exactly that, in C; from
# 3.12 on it compensates the rounding of float sums (Neumaier), which would change the
# numbers, so there the terms go through `+` one by one (functools.reduce).
if sys.version_info < (3, 12):
    add_up = sum
else:
    def add_up(terms, start=0):
        return reduce(add, terms, start)


def recording(rec, items):
    """The items while `rec` records: none without a recorder, and no more once it has given
    up past its term limit (a loop that records apart from the one that computes)."""
    for item in items:
        if not rec:
            return
        yield item


def flat(rows) -> list:
    """A map's rows as one list: cell (h, w) at h·W + w."""
    return list(chain.from_iterable(rows))


def gather(indices, size=None):
    """A function taking the items at `indices` of a list, as a tuple (operator.itemgetter,
    which hands back a bare item for a single index), or the list itself when the indices
    are all `size` of its items in order.  (No lambdas: a layer keeps its tables, and a
    scenario stays picklable.)"""
    indices = list(indices)
    if size is not None and indices == list(range(size)):
        return _whole
    if len(indices) < 2:
        return _Few(indices)
    return itemgetter(*indices)


def _whole(items):
    return items


class _Few:
    """gather() of one index or none."""

    def __init__(self, indices):
        self.indices = tuple(indices)

    def __call__(self, items):
        return tuple([items[k] for k in self.indices])


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
    prefix: str = ""        # "step2." in training step 2 of `steps: N` (N ≥ 2); every name carries it

    @property
    def out(self):
        return f"{self.prefix}{self.layer}.out"

    @property
    def delta(self):
        return f"{self.prefix}{self.layer}.delta"

    def param(self, role):
        return f"{self.prefix}{self.layer}.{role}"

    def grad(self, role):
        return f"{self.prefix}{self.layer}.grad.{role}"

    def new(self, role):
        return f"{self.prefix}{self.layer}.new.{role}"

    def state(self, role, key):
        """The optimizer's new state for a parameter: `c1.state.kernel.exp_avg` (PyTorch's key)."""
        return f"{self.prefix}{self.layer}.state.{role}.{key}"

    def extra(self, name):
        """A value traced inside the layer: `bn.mean`, `bn.xhat.delta`, `r.h`."""
        return f"{self.prefix}{self.layer}.{name}"


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
    keeps_shape = False                    # normalises or drops, keeping the shape: a 1-D or 2-D input is
                                           # read through it, as through an activation
    merge = False                          # reads several values (`from: [a, b]`): forward gets a list
    # Values a layer traces on its way to its output (batch norm's mean, var and xhat) and on
    # its way back (xhat.delta, ...), in the order it makes them.  A layer with any of them
    # takes one more argument in forward / backward, `stage(name, values, reads=roles)`,
    # which traces the value (rounding and `given` apply, as to any step) and returns what
    # the rest of the loops must use; `recs` is then a dict with a recorder per name.
    # `extra_shapes` (set when the layer is built) gives each one's canonical shape.
    extras: tuple = ()
    backward_extras: tuple = ()
    unwritten: dict = {}                   # role -> where a parameter not written comes from, if not `init`
    decides = False                        # compares its input (relu's kink, max-pool's winner)
    # The noise bound of each element of the input the layer is now reading (layers.EPS),
    # nested like x.tolist(), set by the engine for the layers that decide; None: exact.
    floor = None
    # The number system the loops run on (numbers.py): floats unless the scenario's
    # `arithmetic:` says otherwise; set on each layer when the scenario is read.
    num = FLOAT

    def __init__(self, name: str, in_shape: tuple):
        self.name = name
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(in_shape)
        self.extra_shapes: dict = {}     # name -> shape, for `extras` and `backward_extras`
        self.params: dict = {}
        self.origins: dict = {}      # role -> where the parameter's values came from, in words

    @classmethod
    def build(cls, name: str, spec: Spec, ctx: BuildContext) -> "Layer":
        return cls(name, ctx.in_shape)

    def use(self, num) -> None:
        """Run the loops on the number system `num`: the parameters as written, and any
        constant the loops multiply by, become its numbers once, here."""
        self.num = num
        self.params = {role: num.tensor(values) for role, values in self.params.items()}

    @property
    def param_count(self) -> int:
        return sum(p.size for p in self.params.values())

    def multiply_adds(self) -> int:
        """How many scalar operations forward + backward take (for the size limit)."""
        return 3 * math.prod(self.out_shape)

    def term_count(self, step: str) -> int | None:
        """How many terms the step `step` ("grad.bias", "mean") adds up in all, where that
        is far more than its elements (None: about as many, or not known)."""
        return None

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
        grown = self.magnitude_forward(abs(x) + noise["in"], {r: abs(v) + noise[r] for r, v in p.items()})
        exact = not any(bound.any() for bound in noise.values())
        plain = grown if exact else self.magnitude_forward(abs(x), {r: abs(v) for r, v in p.items()})
        return noise_bound(grown, plain, self.noise_terms())

    def magnitude_forward(self, x, p):
        """forward(x, p) on magnitudes, for the noise bounds: the layer's own loops, or (a
        layer may override it) the same terms summed faster in another order, which for
        terms ≥ 0 changes nothing but the last bits."""
        return self.forward(x, p, None)

    def magnitude_backward(self, x, out, delta, p, recs):
        """backward(...) on magnitudes, as `magnitude_forward`."""
        return self.backward(x, out, delta, p, recs)

    def backward_noise(self, x, out, delta, p, noise: dict) -> dict:
        """The noise bound of each element of backward(...), as `forward_noise` (noise also
        holds "out" and "delta").  A layer that decides on its input (max-pool's routing)
        runs on the input itself, so that each error goes where the real pass sent it."""
        recs = {role: None for role in ("in",) + self.param_roles}
        xs = (x, x) if self.decides else (abs(x) + noise["in"], abs(x))
        grown = self.magnitude_backward(xs[0], abs(out) + noise["out"], abs(delta) + noise["delta"],
                                        {r: abs(v) + noise[r] for r, v in p.items()}, recs)
        plain = self.magnitude_backward(xs[1], abs(out), abs(delta), {r: abs(v) for r, v in p.items()}, recs)
        return {role: noise_bound(grown[role], plain[role], self.noise_terms()) for role in grown}

    def roles(self, n: Names) -> dict:
        """Which traced name each role in a recorded term stands for."""
        roles = {"in": n.x, "out": n.out, "delta": n.delta}
        roles.update({role: n.param(role) for role in self.param_roles})
        roles.update({name: n.extra(name) for name in self.extras + self.backward_extras})
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
        values = spec.tensor(key, what=what, shape=shape)
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
    """The bias as written (0 if absent), or None for `bias: false`: no bias parameter at
    all, as PyTorch's bias=False."""
    if "bias" not in spec:
        return np.zeros(count)
    if spec.get("bias") is False:
        return None
    if spec.get("bias") is True:
        raise spec.error("bias", "`bias: true` says nothing about its values",
                         "write its numbers, leave it out for a bias of 0, or write `bias: false` for none")
    values = spec.tensor("bias", what=what, shape=(count,))
    if values.ndim == 0:
        return every(values, count)
    if not fits(values.shape, (count,)):
        raise spec.error("bias", f"{what} should be {shape_words((count,))}{each}, found {shape_words(values.shape)}",
                         "or one number for all of them")
    return values.reshape(count)


def _flag(spec: Spec, key: str, default: bool) -> bool:
    """A yes/no option (`ceil_mode: true`), written as YAML's true or false."""
    value = spec.get(key, default)
    if not isinstance(value, bool):
        from ..spec import kind_of
        raise spec.error(key, f"expected true or false, found {kind_of(value)}")
    return value


def _set_bias(layer, bias):
    """Give the layer its bias parameter, or none at all (`bias: false`)."""
    if bias is None:
        layer.param_roles = tuple(role for role in layer.param_roles if role != "bias")
    else:
        layer.params["bias"] = bias


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


def _out_size(size, window, stride, padding, dilation=(1, 1), ceil=False) -> tuple:
    """How many positions a window takes along each axis of a (zero-padded) input: its taps
    `dilation` apart span d·(k−1)+1 cells.  With `ceil` (pooling's ceil_mode) a last,
    partial window counts too, if it starts inside the input or its left padding
    (PyTorch's pooling_output_shape)."""
    sizes = []
    for n, k, s, p, d in zip(size, window, stride, padding, dilation):
        span = n + 2 * p - d * (k - 1) - 1
        out = (span + (s - 1 if ceil else 0)) // s + 1
        if ceil and (out - 1) * s >= n + p:
            out -= 1
        sizes.append(out)
    return tuple(sizes)


def _need_map(spec: Spec, ctx: BuildContext, what: str):
    if len(ctx.in_shape) != 4:
        raise spec.error("type", f"{what} needs a feature map, but {ctx.previous} makes "
                                 f"{ctx.in_shape[1]} features")


def _makes(ctx: BuildContext, amount: str) -> str:
    """"conv c1 makes 3 maps" or "the input has 3 maps", for messages about a mismatch."""
    return f"the input has {amount}" if ctx.previous == "the input" else f"{ctx.previous} makes {amount}"


def _too_large(spec: Spec, ctx: BuildContext, key: str, what: str, window, padding, dilation=(1, 1)):
    """A kernel or pooling window that does not fit its (padded) input, or None.  Taps
    `dilation` apart span d·(k−1)+1 cells."""
    (ph, pw), (dh, dw) = padding, dilation
    kh, kw = (d * (k - 1) + 1 for d, k in zip(dilation, window))
    _, _, H, W = ctx.in_shape
    if kh <= H + 2 * ph and kw <= W + 2 * pw:
        return None
    if (dh, dw) != (1, 1):
        what = f"{what} ({window[0]}×{window[1]} taps, dilation {dh},{dw}) spans {kh}×{kw} and"
    padded = f"{H + 2 * ph}×{W + 2 * pw} padded input ({H}×{W} with padding {ph},{pw})" if ph or pw \
        else f"{H}×{W} input"
    source = "" if ctx.previous == "the input" else f" (the output of {ctx.previous})"
    what = what if (dh, dw) != (1, 1) else f"{kh}×{kw} {what}"
    return spec.error(key, f"the {what} is larger than its {padded}{source}",
                      "use a smaller window, or more padding")
