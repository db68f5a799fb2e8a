"""Normalisation and dropout: batch norm, layer norm, dropout.

These layers trace values inside themselves (batch norm's mean, variance and normalised
input, and their deltas; dropout's mask) through the engine's `stage` callback (see
`Layer.extras`): each inner value is a step of its own, rounded and pinned like any other,
and what the rest of the loops use is the value `stage` returns, so a mean pinned by `given`
or rounded by hand is the mean the variance, x̂ and the deltas are computed from.

Batch norm's backward pass is the staged one the textbooks write (Ioffe & Szegedy 2015,
algorithm and the equations under it; CS231n's assignment 2):

    x̂.delta   = delta · γ
    var.delta = Σ x̂.delta · (x − μ) · (−½)(var + eps)^(−3/2)
    mean.delta = Σ x̂.delta · (−1/√(var + eps)) + var.delta · Σ −2(x − μ) / m
    x.delta   = x̂.delta / √(var + eps) + var.delta · 2(x − μ)/m + mean.delta / m

Each of these is ∂loss/∂V for the traced value V, with var computed from mean and x̂ from
both (so mean.delta is the total derivative, its path through var included: that term is 0
on paper, since Σ (x − μ) = 0, and is kept as written).  Layer norm is the same per sample.
"""
from __future__ import annotations

import math
from operator import mul

import numpy as np

from ..notation import Frac, Paren, Power, Word, add, eq, func, juxt, prod, seq, sub, sym
from ..spec import Spec, shape_words
from ..tensors import every, fits
from .base import (
    EPS,
    TINY,
    BuildContext,
    Layer,
    Names,
    add_up,
    as_array,
    gather,
    nested,
    noise_bound,
    recording,
    ref,
    sums,
)


def _root(v, sqrt=math.sqrt):
    """√v by the number system's square root; nan below 0, as torch.sqrt gives, where a
    variance pinned by `given` or a sheet's answer is negative (the engine then names the step)."""
    return sqrt(v) if v >= 0 else math.nan


def _inverse_root(v, sqrt=math.sqrt):
    """1/√v, inf at 0 (a variance pinned to −eps) and nan below, as torch.rsqrt gives."""
    root = _root(v, sqrt)
    return 1 / root if root != 0 else math.inf


def _per(spec: Spec, key: str, shape: tuple, default: float, what: str, each: str) -> np.ndarray:
    """A per-channel (or per-element) tensor as written, one number for all, or the default."""
    if key not in spec:
        return np.full(shape, default)
    values = spec.tensor(key, what=what)
    if values.ndim == 0:
        return every(values, shape)
    if not fits(values.shape, shape):
        raise spec.error(key, f"{what} should be {shape_words(shape)}{each}, found {shape_words(values.shape)}",
                         "or one number for all of them")
    return values.reshape(shape)


class Norm(Layer):
    """What batch norm and layer norm share: the groups of elements one mean and variance
    are taken over, the loops, the rules and the noise bounds.  Subclasses set the groups."""
    param_roles = ("gamma", "beta")
    grad_reads = {"gamma": ("delta", "xhat"), "beta": ("delta",)}
    unwritten = {"gamma": "ones (not written)", "beta": "zeros (not written)"}
    extras = ("mean", "var", "xhat")
    backward_extras = ("xhat.delta", "var.delta", "mean.delta")
    in_delta_reads = ("xhat.delta", "var.delta", "mean.delta", "in", "mean", "var")
    train = True
    stat_letter = "n"
    keeps_shape = True

    def _setup(self, spec: Spec, stat_shape: tuple, param_shape: tuple, group_of, param_of):
        """Index tables: for each element of the input, its canonical index, the statistic
        it belongs to and its γ, β element."""
        self.eps = self.e = spec.number("eps", 1e-5)
        if not math.isfinite(self.eps) or self.eps < 0:
            raise spec.error("eps", f"eps is added to the variance under a square root: it must be 0 or more, "
                                    f"found {self.eps:g}")
        self.cells = [tuple(int(a) for a in idx) for idx in np.ndindex(*self.in_shape)]
        self.stat_shape, self.param_shape = stat_shape, param_shape
        self.group_of = [group_of(idx) for idx in self.cells]
        self.param_of = [param_of(idx) for idx in self.cells]
        self.groups = [[] for _ in range(math.prod(stat_shape))]
        for k, g in enumerate(self.group_of):
            self.groups[g].append(k)
        self.stat_cells = [tuple(int(a) for a in idx) for idx in np.ndindex(*stat_shape)]
        self.param_cells = [tuple(int(a) for a in idx) for idx in np.ndindex(*param_shape)]
        self.count = len(self.groups[0])
        self.extra_shapes = {"mean": stat_shape, "var": stat_shape, "xhat": self.in_shape,
                             "xhat.delta": self.in_shape, "var.delta": stat_shape, "mean.delta": stat_shape}
        self.params["gamma"] = _per(spec, "gamma", param_shape, 1.0, "gamma", self.each)
        self.params["beta"] = _per(spec, "beta", param_shape, 0.0, "beta", self.each)

    def multiply_adds(self):
        return 12 * math.prod(self.out_shape)

    def term_count(self, step):
        # a statistic, its delta, and γ's and β's gradients each sum over the values they
        # gather: every element of the input once
        if step in ("mean", "var", "var.delta", "mean.delta", "grad.gamma", "grad.beta"):
            return len(self.cells) * (2 if step == "mean.delta" else 1)
        return None

    def use(self, num):
        super().use(num)
        self.e = num.of(self.eps)
        for key in ("running_mean", "running_var"):
            if hasattr(self, key):
                setattr(self, key, num.tensor(getattr(self, key)))

    def noise_terms(self):
        return self.count + 4

    # --- forward ------------------------------------------------------------------------

    def _members(self) -> list:
        """A `gather` of each statistic's elements (`groups`), made once."""
        if getattr(self, "_member_gathers", None) is None:
            self._member_gathers = [gather(group) for group in self.groups]
        return self._member_gathers

    def _param_members(self) -> list:
        """A `gather` of the elements each γ, β element applies to, in order, made once."""
        if getattr(self, "_param_gathers", None) is None:
            members = [[] for _ in range(len(self.param_cells))]
            for k, j in enumerate(self.param_of):
                members[j].append(k)
            self._param_gathers = [gather(each) for each in members]
        return self._param_gathers

    def forward(self, x, p, recs, stage):
        x = x.reshape(-1).tolist()
        gamma, beta = p["gamma"].reshape(-1).tolist(), p["beta"].reshape(-1).tolist()
        m, cells, rec, members = self.count, self.cells, recs["mean"], self._members()
        if self.train:
            # Σ x / m over each statistic's elements, added in turn
            mean = [add_up(group(x)) / m for group in members]
            for g, group in recording(rec, enumerate(self.groups)):
                for k in group:
                    rec.term(self.stat_cells[g], ("in", cells[k], x[k]), (f"1/{m}", None, self.num.ratio(1, m)))
        else:
            mean = self.running_mean.reshape(-1).tolist()
            for g, v in recording(rec, enumerate(mean)):
                rec.term(self.stat_cells[g], ("running_mean", self.stat_cells[g], v))
        bounds = stage.bounds
        mean = stage("mean", self.num.array(mean).reshape(self.stat_shape), reads=("in",) if self.train else (),
                     noise=self._mean_noise(x, bounds) if bounds is not None and self.train else None)
        mean = mean.reshape(-1).tolist()

        rec = recs["var"]
        if self.train:
            # Σ (x − mean)·(x − mean) / m: the biased variance
            var = [add_up([(xk - mean[g]) * (xk - mean[g]) for xk in group(x)]) / m for g, group in enumerate(members)]
            for g, group in recording(rec, enumerate(self.groups)):
                for k in group:
                    d = x[k] - mean[g]
                    rec.term(self.stat_cells[g], ("in − mean", cells[k], d), ("in − mean", cells[k], d),
                             (f"1/{m}", None, self.num.ratio(1, m)))
        else:
            var = self.running_var.reshape(-1).tolist()
            for g, v in recording(rec, enumerate(var)):
                rec.term(self.stat_cells[g], ("running_var", self.stat_cells[g], v))
        var = stage("var", self.num.array(var).reshape(self.stat_shape), reads=("in", "mean") if self.train else (),
                    noise=self._var_noise(x, mean, bounds) if bounds is not None and self.train else None)
        var = var.reshape(-1).tolist()

        rec = recs["xhat"]
        roots = [_inverse_root(v + self.e, self.num.sqrt) for v in var]          # 1/√(var + eps) of each statistic
        # (x − mean) · 1/√(var + eps)
        xhat = [(x[k] - mean[g]) * roots[g] for k, g in enumerate(self.group_of)]
        for k, g in recording(rec, enumerate(self.group_of)):
            r = roots[g]
            rec.term(cells[k], ("in", cells[k], x[k]), ("1/√(var + eps)", self.stat_cells[g], r))
            rec.term(cells[k], ("−mean", self.stat_cells[g], -mean[g]), ("1/√(var + eps)", self.stat_cells[g], r))
        xhat = stage("xhat", self.num.array(xhat).reshape(self.in_shape), reads=("in", "mean", "var"),
                     noise=self._xhat_noise(x, mean, var, bounds) if bounds is not None else None)
        xhat = xhat.reshape(-1).tolist()

        rec = recs["out"]
        # γ · x̂ + β
        out = [gamma[j] * xhat[k] + beta[j] for k, j in enumerate(self.param_of)]
        for k, j in recording(rec, enumerate(self.param_of)):
            rec.term(cells[k], ("gamma", self.param_cells[j], gamma[j]), ("xhat", cells[k], xhat[k]))
            rec.term(cells[k], ("beta", self.param_cells[j], beta[j]))
        if bounds is not None:
            self._out_bound = self._out_noise(xhat, gamma, beta, bounds)
        return self.num.array(out).reshape(self.in_shape)

    # --- backward -----------------------------------------------------------------------

    def backward(self, x, out, delta, p, recs, stage):
        values = stage.values
        x, delta = x.reshape(-1).tolist(), delta.reshape(-1).tolist()
        gamma = p["gamma"].reshape(-1).tolist()
        mean, var, xhat = (values[k].reshape(-1).tolist() for k in ("mean", "var", "xhat"))
        m, cells, bounds, members = self.count, self.cells, stage.bounds, self._members()

        rg, rb = recs["gamma"], recs["beta"]
        # Σ delta · x̂ and Σ delta over the elements each γ, β element scales and shifts
        gamma_grad = [add_up(map(mul, each(delta), each(xhat))) for each in self._param_members()]
        beta_grad = [add_up(each(delta)) for each in self._param_members()]
        for k, j in recording(rg, enumerate(self.param_of)):
            rg.term(self.param_cells[j], ("delta", cells[k], delta[k]), ("xhat", cells[k], xhat[k]))
        for k, j in recording(rb, enumerate(self.param_of)):
            rb.term(self.param_cells[j], ("delta", cells[k], delta[k]))

        rec = recs["xhat.delta"]
        # delta · γ
        xhat_delta = [delta[k] * gamma[j] for k, j in enumerate(self.param_of)]
        for k, j in recording(rec, enumerate(self.param_of)):
            rec.term(cells[k], ("delta", cells[k], delta[k]), ("gamma", self.param_cells[j], gamma[j]))
        xhat_delta = stage("xhat.delta", self.num.array(xhat_delta).reshape(self.in_shape), reads=("delta", "gamma"),
                           noise=self._dxhat_noise(delta, gamma, bounds) if bounds is not None else None)
        xhat_delta = xhat_delta.reshape(-1).tolist()
        roots = [_inverse_root(v + self.e, self.num.sqrt) for v in var]          # 1/√(var + eps) of each statistic

        if not self.train:
            # the statistics are constants: x̂ = (x − running_mean)/√(running_var + eps)
            rec = recs["in"]
            x_delta = [xhat_delta[k] * roots[g] for k, g in enumerate(self.group_of)]
            for k, g in recording(rec, enumerate(self.group_of)):
                rec.term(cells[k], ("xhat.delta", cells[k], xhat_delta[k]),
                         ("1/√(var + eps)", self.stat_cells[g], roots[g]))
            if bounds is not None:
                self._back_bound = self._backward_noise(x, delta, gamma, mean, var, xhat, xhat_delta, None,
                                                        None, bounds)
            return {"in": self.num.array(x_delta).reshape(self.in_shape), "gamma": self.num.array(gamma_grad).reshape(
                self.param_shape), "beta": self.num.array(beta_grad).reshape(self.param_shape)}

        rec = recs["var.delta"]
        slopes = [-(r ** 3) / 2 for r in roots]                     # −½(var + eps)^(−3/2)
        # Σ x̂.delta · (x − mean) · (−½)(var + eps)^(−3/2)
        var_delta = [add_up([dx * (xk - mean[g]) * slopes[g] for dx, xk in zip(group(xhat_delta), group(x))])
                     for g, group in enumerate(members)]
        for g, group in recording(rec, enumerate(self.groups)):
            for k in group:
                rec.term(self.stat_cells[g], ("xhat.delta", cells[k], xhat_delta[k]),
                         ("in − mean", cells[k], x[k] - mean[g]), ("−½(var + eps)^(−3/2)", self.stat_cells[g],
                                                                   slopes[g]))
        var_delta = stage("var.delta", self.num.array(var_delta).reshape(self.stat_shape),
                          reads=("xhat.delta", "in", "mean", "var"),
                          noise=self._dvar_noise(x, mean, var, xhat_delta, bounds) if bounds is not None else None)
        var_delta = var_delta.reshape(-1).tolist()

        rec = recs["mean.delta"]
        mean_delta = []
        for g, group in enumerate(members):
            r = roots[g]
            # Σ x̂.delta · (−1/√(var + eps)) + var.delta · Σ −2(x − mean) / m
            spread = add_up([-2 * (xk - mean[g]) for xk in group(x)])
            mean_delta.append(add_up([dx * -r for dx in group(xhat_delta)]) + var_delta[g] * spread / m)
            for k in recording(rec, self.groups[g]):
                rec.term(self.stat_cells[g], ("xhat.delta", cells[k], xhat_delta[k]),
                         ("−1/√(var + eps)", self.stat_cells[g], -r))
            if rec:
                rec.term(self.stat_cells[g], ("var.delta", self.stat_cells[g], var_delta[g]),
                         ("Σ −2(in − mean)/m", self.stat_cells[g], spread / m))
        mean_delta = stage("mean.delta", self.num.array(mean_delta).reshape(self.stat_shape),
                           reads=("xhat.delta", "var.delta", "in", "mean", "var"),
                           noise=self._dmean_noise(x, mean, var, xhat_delta, var_delta, bounds)
                           if bounds is not None else None)
        mean_delta = mean_delta.reshape(-1).tolist()

        rec = recs["in"]
        # x̂.delta / √(var + eps) + var.delta · 2(x − mean)/m + mean.delta / m
        x_delta = [xhat_delta[k] * roots[g] + var_delta[g] * (2 * (x[k] - mean[g]) / m) + mean_delta[g] / m
                   for k, g in enumerate(self.group_of)]
        for k, g in recording(rec, enumerate(self.group_of)):
            at = self.stat_cells[g]
            rec.term(cells[k], ("xhat.delta", cells[k], xhat_delta[k]), ("1/√(var + eps)", at, roots[g]))
            rec.term(cells[k], ("var.delta", at, var_delta[g]), ("2(in − mean)/m", cells[k], 2 * (x[k] - mean[g]) / m))
            rec.term(cells[k], ("mean.delta", at, mean_delta[g]), (f"1/{m}", None, self.num.ratio(1, m)))
        if bounds is not None:
            self._back_bound = self._backward_noise(x, delta, gamma, mean, var, xhat, xhat_delta, var_delta,
                                                    mean_delta, bounds)
        return {"in": self.num.array(x_delta).reshape(self.in_shape), "gamma": self.num.array(gamma_grad).reshape(self.param_shape),
                "beta": self.num.array(beta_grad).reshape(self.param_shape)}

    # --- float noise --------------------------------------------------------------------
    # Each inner value is bounded when it is staged, from the bounds of what it read as they
    # were kept (a rounded or pinned mean is exact), so forward/backward leave the bounds of
    # their last results here for `forward_noise` / `backward_noise` (which the engine calls
    # right after, with the same inputs).

    def _flat(self, bounds, role):
        return bounds[role].reshape(-1).tolist()

    def _mean_noise(self, x, bounds):
        e = self._flat(bounds, "in")
        grown = [sum(abs(x[k]) + e[k] for k in group) / self.count for group in self.groups]
        plain = [sum(abs(x[k]) for k in group) / self.count for group in self.groups]
        return noise_bound(as_array(grown), as_array(plain), self.count + 1).reshape(self.stat_shape)

    def _spread(self, x, mean, bounds):
        """Each x − mean's noise: both bounds and the subtraction's rounding."""
        e_x, e_mean = self._flat(bounds, "in"), self._flat(bounds, "mean")
        return [e_x[k] + e_mean[g] + EPS * (abs(x[k]) + abs(mean[g])) for k, g in enumerate(self.group_of)]

    def _var_noise(self, x, mean, bounds):
        e_d = self._spread(x, mean, bounds)
        grown = [sum((abs(x[k] - mean[g]) + e_d[k]) ** 2 for k in group) / self.count
                 for g, group in enumerate(self.groups)]
        plain = [sum((x[k] - mean[g]) ** 2 for k in group) / self.count for g, group in enumerate(self.groups)]
        return noise_bound(as_array(grown), as_array(plain), self.count + 2).reshape(self.stat_shape)

    def _inverse_root_high(self, var, bounds):
        """The largest 1/√(var + eps) within each variance's bound (inf if it may reach 0)."""
        e_var = self._flat(bounds, "var")
        high = []
        for v, e in zip(var, e_var):
            low = max(v - e, 0.0) + self.eps
            high.append(1 / _root(low) * (1 + 4 * EPS) if low > 0 else math.inf)
        return high

    def _xhat_noise(self, x, mean, var, bounds):
        e_d, high = self._spread(x, mean, bounds), self._inverse_root_high(var, bounds)
        bound = []
        for k, g in enumerate(self.group_of):
            d, r = abs(x[k] - mean[g]), _inverse_root(var[g] + self.eps)
            top = (d + e_d[k]) * high[g]
            bound.append(top - d * r + 4 * (EPS * top + TINY))
        return as_array(bound).reshape(self.in_shape)

    def _out_noise(self, xhat, gamma, beta, bounds):
        e_xhat, e_g, e_b = (self._flat(bounds, role) for role in ("xhat", "gamma", "beta"))
        grown = [(abs(gamma[j]) + e_g[j]) * (abs(xhat[k]) + e_xhat[k]) + abs(beta[j]) + e_b[j]
                 for k, j in enumerate(self.param_of)]
        plain = [abs(gamma[j] * xhat[k]) + abs(beta[j]) for k, j in enumerate(self.param_of)]
        return noise_bound(as_array(grown), as_array(plain), 2).reshape(self.in_shape)

    def _dxhat_noise(self, delta, gamma, bounds):
        e_d, e_g = self._flat(bounds, "delta"), self._flat(bounds, "gamma")
        grown = [(abs(delta[k]) + e_d[k]) * (abs(gamma[j]) + e_g[j]) for k, j in enumerate(self.param_of)]
        plain = [abs(delta[k] * gamma[j]) for k, j in enumerate(self.param_of)]
        return noise_bound(as_array(grown), as_array(plain), 1).reshape(self.in_shape)

    def _dvar_noise(self, x, mean, var, xhat_delta, bounds):
        e_d, high = self._spread(x, mean, bounds), self._inverse_root_high(var, bounds)
        e_dx = self._flat(bounds, "xhat.delta")
        grown, plain = [], []
        for g, group in enumerate(self.groups):
            r = _inverse_root(var[g] + self.eps)
            grown.append(sum((abs(xhat_delta[k]) + e_dx[k]) * (abs(x[k] - mean[g]) + e_d[k]) for k in group)
                         * 0.5 * high[g] ** 3)
            plain.append(sum(abs(xhat_delta[k] * (x[k] - mean[g])) for k in group) * 0.5 * r ** 3)
        return noise_bound(as_array(grown), as_array(plain), self.count + 6).reshape(self.stat_shape)

    def _dmean_noise(self, x, mean, var, xhat_delta, var_delta, bounds):
        e_d, high = self._spread(x, mean, bounds), self._inverse_root_high(var, bounds)
        e_dx, e_dv = self._flat(bounds, "xhat.delta"), self._flat(bounds, "var.delta")
        grown, plain = [], []
        for g, group in enumerate(self.groups):
            r = _inverse_root(var[g] + self.eps)
            grown.append(sum(abs(xhat_delta[k]) + e_dx[k] for k in group) * high[g]
                         + (abs(var_delta[g]) + e_dv[g]) * sum(2 * (abs(x[k] - mean[g]) + e_d[k]) for k in group)
                         / self.count)
            plain.append(sum(abs(xhat_delta[k]) for k in group) * r
                         + abs(var_delta[g]) * sum(2 * abs(x[k] - mean[g]) for k in group) / self.count)
        return noise_bound(as_array(grown), as_array(plain), 2 * self.count + 6).reshape(self.stat_shape)

    def _backward_noise(self, x, delta, gamma, mean, var, xhat, xhat_delta, var_delta, mean_delta, bounds):
        e_delta, e_xhat, e_dx = (self._flat(bounds, role) for role in ("delta", "xhat", "xhat.delta"))
        high, m = self._inverse_root_high(var, bounds), self.count
        grown, plain = [], []
        if var_delta is not None:
            e_d = self._spread(x, mean, bounds)
            e_dv, e_dm = self._flat(bounds, "var.delta"), self._flat(bounds, "mean.delta")
        for k, g in enumerate(self.group_of):
            r = _inverse_root(var[g] + self.eps)
            up, down = (abs(xhat_delta[k]) + e_dx[k]) * high[g], abs(xhat_delta[k]) * r
            if var_delta is not None:
                d = abs(x[k] - mean[g])
                up += (abs(var_delta[g]) + e_dv[g]) * 2 * (d + e_d[k]) / m + (abs(mean_delta[g]) + e_dm[g]) / m
                down += abs(var_delta[g]) * 2 * d / m + abs(mean_delta[g]) / m
            grown.append(up)
            plain.append(down)
        result = {"in": noise_bound(as_array(grown), as_array(plain), 8).reshape(self.in_shape)}
        for role, factor in (("gamma", True), ("beta", False)):
            g_up, g_down = nested((len(gamma),)), nested((len(gamma),))
            for k, j in enumerate(self.param_of):
                dk = abs(delta[k]) + e_delta[k]
                g_up[j] += dk * (abs(xhat[k]) + e_xhat[k]) if factor else dk
                g_down[j] += abs(delta[k] * xhat[k]) if factor else abs(delta[k])
            result[role] = noise_bound(as_array(g_up), as_array(g_down), len(self.param_of) // len(gamma) + 1
                                       ).reshape(self.param_shape)
        return result

    def forward_noise(self, x, p, out, noise):
        return self._out_bound

    def backward_noise(self, x, out, delta, p, noise):
        return self._back_bound

    # --- rules --------------------------------------------------------------------------

    def roles(self, n: Names) -> dict:
        roles = super().roles(n)
        roles.update({"in − mean": f"{n.x} − {n.extra('mean')}", "−mean": f"−{n.extra('mean')}"})
        return roles

    def rules(self, n: Names) -> dict:
        letters = "ncij" if len(self.in_shape) == 4 else "nk"
        stat = self.stat_letter
        over = [(a, size) for a, size in zip(letters, self.in_shape) if a != stat]
        x, m, eps = ref(n.x, self.in_shape, letters), self.count, f"{self.eps:g}"
        s = lambda name: ref(name, self.stat_shape, stat)   # noqa: E731
        e = lambda name: ref(name, self.in_shape, letters)   # noqa: E731
        p_letters = stat if self.param_per_stat else letters[1:]
        pr = lambda name: ref(name, self.param_shape, p_letters)   # noqa: E731
        mean, var = s(n.extra("mean")), s(n.extra("var"))
        gpairs = [(a, size) for a, size in zip(letters, self.in_shape) if a not in p_letters]
        total = lambda body: sums(body, *over)   # noqa: E731
        xhd, vd, md = e(n.extra("xhat.delta")), s(n.extra("var.delta")), s(n.extra("mean.delta"))
        centred, root = Paren(sub(x, mean)), func("√", add(var, sym(eps)))
        rules = {
            "mean": eq(mean, juxt(Paren(Frac(sym(1), sym(m))), total(x), space=" ")) if self.train
            else eq(mean, seq(Word("running_mean"), " (eval mode: as given)")),
            "var": eq(var, juxt(Paren(Frac(sym(1), sym(m))), total(Power(centred, "2")), space=" ")) if self.train
            else eq(var, seq(Word("running_var"), " (eval mode: as given)")),
            "xhat": eq(e(n.extra("xhat")), Frac(centred, root, spaced=True)),
            "out": eq(e(n.out), add(prod(pr(n.param("gamma")), e(n.extra("xhat"))), pr(n.param("beta")))),
            "gamma": eq(pr(n.grad("gamma")), sums(prod(e(n.delta), e(n.extra("xhat"))), *gpairs)),
            "beta": eq(pr(n.grad("beta")), sums(e(n.delta), *gpairs)),
            "xhat.delta": eq(xhd, prod(e(n.delta), pr(n.param("gamma")))),
            "var.delta": eq(vd, total(prod(xhd, centred, juxt(Paren(sym("−½")),
                                                               Power(Paren(add(var, sym(eps))), "(−3/2)"))))),
            "mean.delta": eq(md, add(total(prod(xhd, Paren(Frac(sym("−1"), root)))),
                                     prod(vd, total(Frac(juxt(sym("−2"), centred), sym(m), spaced=True))))),
            "in": eq(e(n.x_delta), add(Frac(xhd, root, spaced=True),
                                       Frac(prod(vd, juxt(sym(2), centred)), sym(m), spaced=True),
                                       Frac(md, sym(m), spaced=True))) if self.train else
            eq(e(n.x_delta), seq(Frac(xhd, root, spaced=True), "  (eval mode: the statistics are constants)")),
        }
        return rules


class BatchNorm(Norm):
    """Per channel of a map (over N, H, W) or per feature of dense values (over N), with
    the batch's mean and biased variance (train) or the running ones (eval)."""
    type = "batchnorm"
    keys = frozenset({"gamma", "beta", "eps", "mode", "running_mean", "running_var"})
    param_per_stat = True
    each = " (one per channel)"

    @classmethod
    def build(cls, name, spec, ctx: BuildContext):
        layer = cls(name, ctx.in_shape)
        shape = ctx.in_shape
        layer.stat_letter = "c" if len(shape) == 4 else "k"
        C = shape[1]
        layer.each = " (one per channel)" if len(shape) == 4 else " (one per feature)"
        mode = spec.choice("mode", ("train", "eval"), "train")
        layer.train = mode == "train"
        layer._setup(spec, (C,), (C,), lambda idx: idx[1], lambda idx: idx[1])
        if layer.train:
            for key in ("running_mean", "running_var"):
                if key in spec:
                    raise spec.error(key, f"train mode normalises with the batch's own statistics; {key} is "
                                          "read in eval mode only", "write `mode: eval` to use it")
            if layer.count == 1:
                over = "N·H·W" if len(shape) == 4 else "N"
                raise spec.error("mode" if "mode" in spec else "type",
                                 f"batch norm in train mode needs more than one value per "
                                 f"{'channel' if len(shape) == 4 else 'feature'} ({over} = 1 here); PyTorch "
                                 "raises 'Expected more than 1 value per channel when training'",
                                 "use a batch of several samples, or `mode: eval` with running_mean and running_var")
        else:
            layer.running_mean = _per(spec, "running_mean", (C,), 0.0, "running_mean", layer.each)
            layer.running_var = _per(spec, "running_var", (C,), 1.0, "running_var", layer.each)
            if (layer.running_var < 0).any() or (layer.running_var + layer.eps <= 0).any():
                raise spec.error("running_var", "a variance is 0 or more, and running_var + eps must be above 0",
                                 f"found {layer.running_var.min():g}")
            layer.backward_extras = ("xhat.delta",)
            layer.in_delta_reads = ("xhat.delta", "var")
        return layer

    def multiply_adds(self):
        return 12 * math.prod(self.out_shape)


class LayerNorm(Norm):
    """Over every non-batch axis of each sample, as LayerNorm(x.shape[1:]); γ and β have
    the sample's shape (PyTorch's elementwise affine)."""
    type = "layernorm"
    keys = frozenset({"gamma", "beta", "eps"})
    param_per_stat = False
    each = " (one per element of a sample)"
    stat_letter = "n"

    @classmethod
    def build(cls, name, spec, ctx: BuildContext):
        layer = cls(name, ctx.in_shape)
        shape = ctx.in_shape
        inner = tuple(shape[1:])
        layer._setup(spec, (shape[0],), inner, lambda idx: idx[0],
                     lambda idx: int(np.ravel_multi_index(idx[1:], inner)))
        return layer


class Dropout(Layer):
    """Inverted dropout, as PyTorch's in training mode: out = x · mask / (1 − p), the mask
    0 (dropped) or 1 (kept).  Backward: x.delta = delta · mask / (1 − p)."""
    type = "dropout"
    keys = frozenset({"p", "mask", "seed"})
    extras = ("mask",)
    in_delta_reads = ("delta", "mask")
    keeps_shape = True

    @classmethod
    def build(cls, name, spec, ctx: BuildContext):
        layer = cls(name, ctx.in_shape)
        p = spec.number("p", 0.5)
        if not 0 <= p <= 1:
            raise spec.error("p", f"p is the probability of dropping a value: between 0 and 1, found {p:g}")
        layer.p = p
        # PyTorch's p = 1 gives zeros (every value dropped), not a division by 0
        layer.scale = 1 / (1 - p) if p < 1 else 0.0
        layer.factor = layer.scale
        if ("mask" in spec) == ("seed" in spec):
            raise spec.error(None if "mask" not in spec else "seed",
                             "dropout needs either `mask` (0 or 1 for each value of its input) or `seed`"
                             if "mask" not in spec else "write `mask` or `seed`, not both",
                             "`seed: 0` draws the mask with numpy's default_rng(0)")
        if "mask" in spec:
            mask = spec.tensor("mask", what="the mask")
            if not fits(mask.shape, ctx.in_shape):
                raise spec.error("mask", f"the mask should be {shape_words(ctx.in_shape)}, like the input it "
                                         f"drops from ({ctx.previous}), found {shape_words(mask.shape)}")
            mask = mask.reshape(ctx.in_shape)
            bad = [v for v in mask.reshape(-1).tolist() if v not in (0.0, 1.0)]
            if bad:
                raise spec.error("mask", f"a mask holds 0 (dropped) or 1 (kept), found {bad[0]:g}")
            if p == 1 and mask.any():
                raise spec.error("mask", "p = 1 drops every value: the mask can only hold zeros")
            layer.mask, layer.origin = mask, "as written"
        else:
            seed = spec.integer("seed", minimum=0)
            layer.mask = (np.random.default_rng(seed).random(ctx.in_shape) >= p).astype(float)
            layer.origin = f"drawn with numpy default_rng({seed}): kept where random() ≥ {p:g}"
        layer.extra_shapes = {"mask": ctx.in_shape}
        return layer

    def forward(self, x, p, recs, stage):
        rec = recs["mask"]
        if rec:
            for idx in np.ndindex(*self.in_shape):
                at = tuple(int(a) for a in idx)
                rec.term(at, ("mask as drawn" if "drawn" in self.origin else "mask as written", at, self.mask[idx]))
        mask = stage("mask", self.num.tensor(self.mask)).reshape(-1).tolist()
        shape, rec, scale = x.shape, recs["out"], self.factor
        x = x.reshape(-1).tolist()
        out = nested((len(x),))
        for k, (z, keep) in enumerate(zip(x, mask)):
            out[k] = z * keep * scale
            if rec:
                at = tuple(int(a) for a in np.unravel_index(k, shape))
                rec.term(at, ("in", at, z), ("mask", at, keep), (self.scale_text, None, scale))
        self._mask = mask
        return self.num.array(out).reshape(shape)

    def use(self, num):
        super().use(num)
        # 1/(1 − p) from p as written: p = 0.3 keeps 10/7, not the float nearest 1/0.7
        self.factor = 1 / (1 - num.of(self.p)) if self.p < 1 else 0 * num.of(self.p)

    @property
    def scale_text(self):
        return f"{self.scale:.10g}"

    def backward(self, x, out, delta, p, recs, stage):
        shape, rec, scale = x.shape, recs["in"], self.factor
        mask = stage.values["mask"].reshape(-1).tolist()
        delta = delta.reshape(-1).tolist()
        x_delta = nested((len(delta),))
        for k, (d, keep) in enumerate(zip(delta, mask)):
            x_delta[k] = d * keep * scale
            if rec:
                at = tuple(int(a) for a in np.unravel_index(k, shape))
                rec.term(at, ("delta", at, d), ("mask", at, keep), (self.scale_text, None, scale))
        return {"in": self.num.array(x_delta).reshape(shape)}

    def forward_noise(self, x, p, out, noise):
        factor = np.abs(as_array(self._mask).reshape(x.shape)) * self.scale
        grown = (np.abs(x) + noise["in"]) * factor
        return noise_bound(grown, np.abs(x) * factor, 2)

    def backward_noise(self, x, out, delta, p, noise):
        factor = np.abs(as_array(self._mask).reshape(x.shape)) * self.scale
        grown = (np.abs(delta) + noise["delta"]) * factor
        return {"in": noise_bound(grown, np.abs(delta) * factor, 2)}

    def rules(self, n: Names) -> dict:
        letters = "ncij" if len(self.in_shape) == 4 else "nk"
        e = lambda name: ref(name, self.in_shape, letters)   # noqa: E731
        keep = Paren(sub(1, sym(f"{self.p:g}")))
        return {
            "mask": eq(e(n.extra("mask")), f"{self.origin} (1 keeps, 0 drops)"),
            "out": eq(e(n.out), Frac(prod(e(n.x), e(n.extra("mask"))), keep, spaced=True)) if self.p < 1
            else eq(e(n.out), seq(sym(0), "  (p = 1 drops every value)")),
            "in": eq(e(n.x_delta), Frac(prod(e(n.delta), e(n.extra("mask"))), keep, spaced=True)) if self.p < 1
            else eq(e(n.x_delta), seq(sym(0), "  (p = 1 drops every value)")),
        }
