"""Activations, applied element by element (softmax: over the features or channels)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ScenarioError
from ..notation import Frac, Paren, Ref, Sum, add, eq, func, had, prod, seq, sub, sym
from ..tensors import display_index
from .base import EPS, TINY, Layer, as_array, noise_bound, ref


class Activation(Layer):
    """out = f(x) element by element; backward: x.delta = delta · f′, with f′ written in
    the terms a student uses (σ′ = out·(1 − out), as in seed 001 and Zhang eq. 37)."""
    symbol = "f"
    in_delta_reads = ("delta", "out")
    zero = 0       # the noise bound of the element at hand (`floor`): within it of 0 is 0
    elementwise = True
    rounds = 2     # f's own float error, in EPS of |out| (exp and tanh are within an ulp)

    def f(self, z):
        raise NotImplementedError

    def slope(self, z, y):
        """f′ at this element as factors (label role, value): the activation's own local
        derivative."""
        raise NotImplementedError

    def slope_rule(self, out, x):
        """f′ as the rule writes it, from the notation of out and x."""
        return sym("f′")

    def floors(self, size) -> list:
        """Each input element's noise bound, flat (zeros when the input is exact)."""
        return [0] * size if self.floor is None else np.reshape(self.floor, -1).tolist()

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
        return self.num.array(out).reshape(shape)

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
        return {"in": self.num.array(x_delta).reshape(shape)}

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
            "out": eq(Ref(n.out), func(self.symbol, Ref(n.x))),
            "in": eq(Ref(n.x_delta), had(Ref(n.delta), self.slope_rule(Ref(n.out), Ref(n.x)))),
        }


# slope factors that are values of this element; any other label is a constant such as "1 (x > 0)"
ELEMENT_ROLES = ("out", "1 − out", "1 + out", "in")


def _share(mine, others) -> float:
    """exp(mine) / (exp(mine) + Σ exp(others)), shifted by the largest exponent as softmax
    is: nothing overflows, and only a share that is itself below the smallest float underflows."""
    top = max([mine] + others)
    part = math.exp(mine - top)
    return part / (part + sum(math.exp(z - top) for z in others))


def _sigmoid(z, exp=math.exp):
    # the two forms avoid overflow of exp for large |z|
    if z >= 0:
        return 1 / (1 + exp(-z))
    e = exp(z)
    return e / (1 + e)


class Sigmoid(Activation):
    type, symbol = "sigmoid", "σ"
    def slope_rule(self, out, x):
        return had(out, Paren(sub(1, out)))

    def f(self, z):
        return self.num.sigmoid(z)

    def slope(self, z, y):
        return [("out", y), ("1 − out", 1 - y)]


class Tanh(Activation):
    type, symbol = "tanh", "tanh"
    def slope_rule(self, out, x):
        return had(Paren(sub(1, out)), Paren(add(1, out)))

    def f(self, z):
        return self.num.tanh(z)

    def slope(self, z, y):
        # 1 − tanh² written as (1 − y)(1 + y): two factors a reader can check
        return [("1 − out", 1 - y), ("1 + out", 1 + y)]


class Relu(Activation):
    type, symbol = "relu", "relu"
    in_delta_reads = ("delta", "in")
    decides = True
    rounds = 0     # z or 0: nothing is rounded
    def slope_rule(self, out, x):
        return seq(sym("["), x, sym(" > 0]"))

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
        layer.negative_slope = layer.k = spec.number("slope", 0.01)
        return layer

    def slope_rule(self, out, x):
        return Paren(seq(sym(1), " if ", x, sym(" > 0"), " else ", sym(f"{self.negative_slope:g}")))

    def use(self, num):
        super().use(num)
        self.k = num.of(self.negative_slope)

    def f(self, z):
        return z if z > self.zero else self.k * z

    def slope(self, z, y):
        return [("1 (x > 0)", 1)] if z > self.zero else [(f"{self.negative_slope:g} (x ≤ 0)", self.k)]


class Identity(Activation):
    type, symbol = "identity", "identity"
    def slope_rule(self, out, x):
        return sym(1)
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
        out = self.num.zeros(self.in_shape)
        for group in self._groups():
            top = self.num.softmax_shift([get(idx) for idx in group])
            exps = [self.num.exp(get(idx) - top) for idx in group]
            total = sum(exps)
            for idx, e in zip(group, exps):
                out[idx] = e / total
                if rec:
                    rec.apply(idx, "softmax", ("in", idx, get(idx)))
        return out

    def backward(self, x, out, delta, p, recs):
        rec = recs["in"]
        x_delta = self.num.zeros(self.in_shape)
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
            "out": eq(ref(n.out, self.out_shape, "nk"),
                      Frac(func("exp", Ref(n.x, ("k",))), Sum(("j",), func("exp", Ref(n.x, ("j",)))), spaced=True)),
            "in": eq(Ref(n.x_delta, ("k",)),
                     prod(Ref(n.out, ("k",)), Paren(sub(Ref(n.delta, ("k",)),
                                                        Sum(("j",), prod(Ref(n.delta, ("j",)), Ref(n.out, ("j",)))))))),
        }


# --- smooth element-wise functions (exp, log, square, elu, softplus, silu, gelu) ---------
# Each derivative is written the way a textbook writes it (exp′ = out, log′ = 1/x,
# square′ = 2x, elu′ = out + α below 0, softplus′ = σ(x), silu′ = σ(x)·(1 + x·(1 − σ(x))),
# gelu′ = Φ(x) + x·φ(x)), and computed as PyTorch computes it, so both agree to the last bits.

def _erf(z):
    """erf: the one place this module takes it (a later number type swaps it here)."""
    return math.erf(z)


SQRT1_2 = math.sqrt(0.5)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


class Smooth(Activation):
    """An element-wise function whose derivative is one formula of x (or of out).  Noise:
    forward by the range of f over [x − e, x + e] (endpoints, and a stationary point
    inside it for the non-monotone ones); backward by the slope's own bound."""
    rounds = 4
    stationary: tuple = ()     # (x, f(x)) where f′ = 0: f is not monotone around it
    where = ""                 # the key path of this layer, for messages about its input

    @classmethod
    def build(cls, name, spec, ctx):
        layer = cls(name, ctx.in_shape)
        layer.where = f"layers[{spec.path[1]}].type"
        return layer

    def forward_noise(self, x, p, out, noise):
        bound = []
        for z, e, y in zip(x.reshape(-1).tolist(), noise["in"].reshape(-1).tolist(), out.reshape(-1).tolist()):
            if e == 0:
                bound.append(self.rounds * (EPS * abs(y) + TINY))
                continue
            ends = [self.range_at(z - e), self.range_at(z + e)]
            ends += [fs for xs, fs in self.stationary if z - e <= xs <= z + e]
            spread = max(abs(v - y) for v in ends)
            bound.append(spread + self.rounds * (EPS * (abs(y) + spread) + TINY))
        return as_array(bound).reshape(x.shape)

    def range_at(self, z):
        return self.f(z)

    def slope_bound(self, z, y, e_in, e_out) -> float:
        """How far this element's slope may be from its value on paper."""
        raise NotImplementedError

    def backward_noise(self, x, out, delta, p, noise):
        e_in, e_out, e_delta = (noise[role].reshape(-1).tolist() for role in ("in", "out", "delta"))
        bound = []
        for k, (z, y, d) in enumerate(zip(x.reshape(-1).tolist(), out.reshape(-1).tolist(),
                                          delta.reshape(-1).tolist())):
            self.zero = 0.0
            s = math.prod(v for _, v in self.slope(z, y))
            b = self.slope_bound(z, y, e_in[k], e_out[k])
            bound.append(noise_bound((abs(d) + e_delta[k]) * (abs(s) + b), abs(d * s), 6))
        return {"in": as_array(bound).reshape(x.shape)}


class Exp(Smooth):
    type, symbol = "exp", "exp"
    def slope_rule(self, out, x):
        return out

    def f(self, z):
        # torch.exp gives inf past the largest float where math.exp raises; inf lets the
        # engine name the element that grew too large
        try:
            return self.num.exp(z)
        except OverflowError:
            return math.inf

    def slope(self, z, y):
        return [("out", y)]          # exp′ = exp = out

    def slope_bound(self, z, y, e_in, e_out):
        return e_out


class Log(Smooth):
    type, symbol = "log", "log"
    def slope_rule(self, out, x):
        return Frac(sym(1), x)

    def f(self, z):
        if not z > 0:
            raise ScenarioError(f"log needs inputs above 0, but {self.reading} is {z:g}", key=self.where,
                                hint="log of 0 or less is not a number; put an exp, softplus or sigmoid before it")
        return self.num.log(z)

    def forward(self, x, p, rec):
        bad = [k for k, z in enumerate(x.reshape(-1).tolist()) if not z > 0]
        if bad:
            at = display_index(x.shape, tuple(int(a) for a in np.unravel_index(bad[0], x.shape)))
            self.reading = f"its input element [{','.join(map(str, at))}] (counting from 0)" if at else "its input"
        return super().forward(x, p, rec)

    def range_at(self, z):
        return math.log(z) if z > 0 else -math.inf

    def slope(self, z, y):
        return [("1/in", 1 / z)]

    def slope_bound(self, z, y, e_in, e_out):
        return (1 / (z - e_in) - 1 / z if z > e_in else math.inf) + 2 * EPS / z


class Square(Smooth):
    type, symbol = "square", "square"
    def slope_rule(self, out, x):
        return prod(2, x)
    stationary = ((0.0, 0.0),)

    def f(self, z):
        return z * z

    def slope(self, z, y):
        return [("2", 2), ("in", z)]

    def slope_bound(self, z, y, e_in, e_out):
        return 2 * e_in


class Elu(Smooth):
    """elu(x) = x above 0, α(eˣ − 1) at or below; elu′ = 1 above 0, out + α at or below
    (= α·eˣ; at 0 it is α, as PyTorch's backward)."""
    type, symbol = "elu", "elu"
    keys = frozenset({"alpha"})
    decides = True

    @classmethod
    def build(cls, name, spec, ctx):
        layer = super().build(name, spec, ctx)
        layer.alpha = layer.a = spec.number("alpha", 1.0)
        return layer

    def slope_rule(self, out, x):
        return Paren(seq(sym(1), " if ", x, sym(" > 0"), " else ", add(out, sym(f"{self.alpha:g}"))))

    def use(self, num):
        super().use(num)
        self.a = num.of(self.alpha)

    def f(self, z):
        return z if z > self.zero else self.a * self.num.expm1(z)

    def range_at(self, z):
        return z if z > 0 else self.alpha * math.expm1(z)

    def slope(self, z, y):
        return [("1 (x > 0)", 1)] if z > self.zero else [(f"out + {self.alpha:g}", y + self.a)]

    def slope_bound(self, z, y, e_in, e_out):
        return 0.0 if z > self.zero else e_out + EPS * (abs(y) + abs(self.alpha))


class Softplus(Smooth):
    """softplus(x) = log(1 + eˣ), and x itself above 20 (PyTorch's beta = 1, threshold =
    20); softplus′ = σ(x), and 1 above 20."""
    type, symbol = "softplus", "softplus"
    def slope_rule(self, out, x):
        return seq(func("σ", x), "  (1 where ", x, sym(" > 20"), ")")

    def f(self, z):
        return z if z > 20 else self.num.log1p(self.num.exp(z))

    def slope(self, z, y):
        if z > 20:
            return [("1 (x > 20)", 1)]
        e = self.num.exp(z)
        return [("σ(in)", e / (e + 1))]

    def slope_bound(self, z, y, e_in, e_out):
        return e_in / 4          # σ′ ≤ 1/4


class Silu(Smooth):
    """silu(x) = x·σ(x); silu′ = σ(x)·(1 + x·(1 − σ(x)))."""
    type, symbol = "silu", "silu"
    def slope_rule(self, out, x):
        return prod(func("σ", x), Paren(add(1, prod(x, Paren(sub(1, func("σ", x)))))))
    stationary = ((-1.2784645427610737, -0.2784645427610738),)

    def f(self, z):
        return z * self.num.sigmoid(z)

    def slope(self, z, y):
        s = 1 / (1 + self.num.exp(-z)) if z > -700 else 0 * z
        return [("σ(in)", s), ("1 + in·(1 − σ(in))", 1 + z * (1 - s))]

    def slope_bound(self, z, y, e_in, e_out):
        return 0.5 * e_in        # |silu″| ≤ 1/2 (its largest, at 0)


class Gelu(Smooth):
    """gelu(x) = x·Φ(x) = ½x(1 + erf(x/√2)) (the erf form, PyTorch's default);
    gelu′ = Φ(x) + x·φ(x)."""
    type, symbol = "gelu", "gelu"
    def slope_rule(self, out, x):
        return add(func("Φ", x), prod(x, func("φ", x)))
    stationary = ((-0.7517915246935645, -0.16997120747990366),)

    def f(self, z):
        return z * 0.5 * (1 + _erf(z * SQRT1_2))

    def slope(self, z, y):
        cdf = 0.5 * (1 + _erf(z * SQRT1_2))
        return [("Φ(in) + in·φ(in)", cdf + z * math.exp(-0.5 * z * z) * INV_SQRT_2PI)]

    def slope_bound(self, z, y, e_in, e_out):
        return 0.8 * e_in        # |gelu″| = φ(x)·|2 − x²| ≤ 2φ(0) < 0.8
