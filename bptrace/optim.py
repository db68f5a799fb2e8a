"""Optimizers: the update step after the backward pass, as torch.optim computes it.

Each optimizer's `update` is the body of torch.optim's single-tensor loop for one parameter
(torch/optim/sgd.py, adam.py, rmsprop.py, adagrad.py: `_single_tensor_*`, float64, not
maximizing), written as explicit loops over the elements.  It produces, in order, the new
state tensors under PyTorch's state key names (`momentum_buffer`, `exp_avg`, `exp_avg_sq`,
`square_avg`, `grad_avg`, `sum`) and then the new parameter, each through `u.stage(...)`,
which traces it (rounding and `given` apply as to any step) and returns what the rest of
the update must use.  The step count (`step` in PyTorch's state) is carried, not traced:
the rules show it where it enters (Adam's bias correction, Adagrad's lr_decay).

Where a formula has several terms (β₁·m + (1 − β₁)·g) the terms are recorded as a sum; a
gradient with weight decay is `g + wd·p` (PyTorch adds it before anything else reads g),
shown as a labelled factor.  Float rounding may differ from torch in the last bit (torch
uses fused multiply-adds and `lerp`); the oracles compare to 1e-9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .layers import nested
from .numbers import FLOAT

# type -> {option: default}, as torch.optim's constructors (torch 2.x).  `lr` defaults too.
OPTIONS = {
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
    "adagrad": {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
}


def _g(value) -> str:
    # exact arithmetic keeps options as fractions: shown as the decimals they were written as
    return f"{float(value):g}"


@dataclass
class Optimizer:
    """An optimizer with its options (torch's names) and the state given in the scenario:
    parameter name ("c1.kernel") -> {state key: values, "step": count}."""
    type: str
    options: dict
    state: dict = field(default_factory=dict)
    shorthand: bool = False          # written as `learning_rate:` (plain SGD)
    num: object = FLOAT              # the number system the update's loops run on

    def use(self, num) -> "Optimizer":
        """This optimizer on the number system `num`: its options and given state as its
        numbers (a copy; the scenario's own stays as read)."""
        options = {key: value if isinstance(value, bool) else
                   tuple(num.of(v) for v in value) if isinstance(value, tuple) else num.of(value)
                   for key, value in self.options.items()}
        state = {name: {key: values if key == "step" else num.tensor(np.asarray(values, dtype=float))
                        for key, values in given.items()} for name, given in self.state.items()}
        return replace(self, options=options, state=state, num=num)

    @property
    def lr(self) -> float:
        return self.options["lr"]

    def state_keys(self) -> tuple:
        """The state this optimizer keeps per parameter and traces, in the order it makes it."""
        return STATE_KEYS[self.type](self.options)

    def describe(self) -> str:
        if self.shorthand:
            return "one SGD step"
        defaults = OPTIONS[self.type]
        shown = [f"{key} {value if isinstance(value, (bool, tuple)) else _g(value)}"
                 for key, value in self.options.items() if key == "lr" or value != defaults[key]]
        return f"{NAMES[self.type]} ({', '.join(shown)})"

    def update(self, u) -> dict:
        """One step for one parameter (u: `Update`); returns the new state."""
        return UPDATES[self.type](self, u)

    # the two formulas the mistake catalog replaces
    def corrections(self, t: int) -> tuple:
        """Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ."""
        b1, b2 = self.options["betas"]
        return 1 - b1 ** t, 1 - b2 ** t

    def momentum_sign(self) -> float:
        """SGD momentum: the buffer is μ·buf + (1 − dampening)·g; its gradient's sign."""
        return 1

    def step_reads_new_buffer(self) -> bool:
        """SGD momentum: the step reads the buffer this step made (torch), not the one before."""
        return True


NAMES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
STATE_KEYS = {
    "sgd": lambda o: ("momentum_buffer",) if o["momentum"] else (),
    "adam": lambda o: ("exp_avg", "exp_avg_sq"),
    "rmsprop": lambda o: ("square_avg",) + (("grad_avg",) if o["centered"] else ())
    + (("momentum_buffer",) if o["momentum"] > 0 else ()),
    "adagrad": lambda o: ("sum",),
}
# keys a scenario's `state:` may give, per type (`step` is the count of steps already taken)
GIVEN_KEYS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq", "step"),
              "rmsprop": ("square_avg", "grad_avg", "momentum_buffer", "step"), "adagrad": ("sum", "step")}


class Update:
    """What one parameter's update reads and how it traces what it makes (built by the engine).

    old, grad: the parameter and its gradient (arrays); names: their traced names; new: the
    new parameter's name; state(key): the traced name of a new state tensor; before(key): how
    the rules and terms name the state the step starts from (the previous step's traced
    name, "exp_avg (given)", or None when fresh); previous: {key: values or None (fresh)};
    step: the count of steps already taken; stage(key, rule, compute, roles): compute(rec)
    makes the values, traced under state(key) or `new` (key "new")."""

    def __init__(self, old, grad, names, previous, step, stage):
        self.old, self.grad, self.names, self.previous, self.step, self.stage = old, grad, names, previous, step, stage

    def before(self, key):
        return self.names["before"].get(key)


def _cells(shape):
    return list(np.ndindex(*shape))


def _decayed(opt, u):
    """The gradient each formula reads: g, or g + wd·p with weight decay (torch adds it
    first), and the factor that shows it in a term: (label, index-role, values)."""
    wd = opt.options["weight_decay"]
    if not wd:
        return u.grad, "grad", u.names["grad"]
    g = u.grad + wd * u.old
    label = f"{u.names['grad']} + {_g(wd)}·{u.names['old']}"
    return g, label, f"({label})"


def _sgd(opt, u):
    lr, o, num = opt.lr, opt.options, opt.num
    g, g_role, g_text = _decayed(opt, u)
    old_name, new_name = u.names["old"], u.names["new"]
    state = {}
    step = g
    if o["momentum"]:
        mu, keep = o["momentum"], 1 - o["dampening"]
        sign = opt.momentum_sign()
        before = u.before("momentum_buffer")
        buf = u.previous.get("momentum_buffer")

        def momentum(rec):
            out = nested(u.old.shape)
            for idx in _cells(u.old.shape):
                if buf is None:       # torch: the first step's buffer is the gradient itself
                    out_value = g[idx]
                    if rec:
                        rec.term(idx, (g_role, idx, g[idx]))
                else:
                    out_value = mu * buf[idx] + sign * keep * g[idx]
                    if rec:
                        rec.term(idx, (_g(mu), None, mu), ("before", idx, buf[idx]))
                        rec.term(idx, (_g(sign * keep), None, sign * keep), (g_role, idx, g[idx]))
                _set(out, idx, out_value)
            return num.array(out)
        name = u.names["state"]("momentum_buffer")
        if buf is None:
            rule = f"{name} = {g_text} (the first step: the buffer starts as the gradient)"
        else:
            keep_text = "" if keep == 1 else f"{_g(keep)} · "
            rule = f"{name} = {_g(mu)} · {before} {'+' if sign > 0 else '−'} {keep_text}{g_text}"
        buf = state["momentum_buffer"] = u.stage("momentum_buffer", rule, momentum, {"before": before})
        if o["nesterov"]:
            step = g + mu * buf
            step_text = f"({g_text} + {_g(mu)} · {name})"
            step_terms = lambda idx: [((g_role, idx, g[idx]),), ((_g(mu), None, mu), ("buf", idx, buf[idx]))]
        elif not opt.step_reads_new_buffer():
            # the step taken with the buffer it started from (none yet: a zero step)
            before_buf = np.zeros(u.old.shape) if u.previous.get("momentum_buffer") is None \
                else u.previous["momentum_buffer"]
            step, step_text = before_buf, before or "0"
            step_terms = (lambda idx: []) if before is None else (lambda idx: [(("buf", idx, before_buf[idx]),)])
        else:
            step = buf
            step_text = name
            step_terms = lambda idx: [(("buf", idx, buf[idx]),)]
        roles = {"buf": name if opt.step_reads_new_buffer() else before}
    else:
        step_text = g_text
        step_terms = lambda idx: [((g_role, idx, g[idx]),)]
        roles = {}

    def parameter(rec):
        out = nested(u.old.shape)
        for idx in _cells(u.old.shape):
            _set(out, idx, u.old[idx] - lr * step[idx])
            if rec:
                rec.term(idx, ("old", idx, u.old[idx]))
                for term in step_terms(idx):
                    rec.term(idx, (f"−{_g(lr)}", None, -lr), *term)
        return num.array(out)
    u.stage("new", f"{new_name} = {old_name} − {_g(lr)} · {step_text}", parameter, roles)
    return state


def _moving_average(num, shape, previous, beta, g, g_role, squared=False):
    """The loop of β · previous + (1 − β) · g (or · g², `squared`), element by element: Adam's
    exp_avg and exp_avg_sq, RMSprop's grad_avg and square_avg.  A fresh state's previous is
    0, as PyTorch starts it."""
    def run(rec):
        out = nested(shape)
        for idx in _cells(shape):
            m = 0 if previous is None else previous[idx]
            new = g[idx] * g[idx] if squared else g[idx]
            _set(out, idx, beta * m + (1 - beta) * new)
            if rec:
                if previous is not None:
                    rec.term(idx, (_g(beta), None, beta), ("before", idx, m))
                rec.term(idx, (_g(1 - beta), None, 1 - beta), *[(g_role, idx, g[idx])] * (2 if squared else 1))
        return num.array(out)
    return run


def _adam(opt, u):
    lr, o, num = opt.lr, opt.options, opt.num
    b1, b2 = o["betas"]
    eps = o["eps"]
    t = u.step + 1
    g, g_role, g_text = _decayed(opt, u)
    m0, v0 = u.previous.get("exp_avg"), u.previous.get("exp_avg_sq")
    m_name, v_name = u.names["state"]("exp_avg"), u.names["state"]("exp_avg_sq")

    first = _moving_average(opt.num, u.old.shape, m0, b1, g, g_role)

    second = _moving_average(opt.num, u.old.shape, v0, b2, g, g_role, squared=True)

    before_m, before_v = u.before("exp_avg"), u.before("exp_avg_sq")
    m = u.stage("exp_avg", f"{m_name} = " + (f"{_g(b1)} · {before_m} + " if before_m else "")
                + f"(1 − {_g(b1)}) · {g_text}", first, {"before": before_m})
    v = u.stage("exp_avg_sq", f"{v_name} = " + (f"{_g(b2)} · {before_v} + " if before_v else "")
                + f"(1 − {_g(b2)}) · {g_text}²", second, {"before": before_v})
    c1, c2 = opt.corrections(t)
    step_size = lr / c1
    root_c2 = _sqrt(c2, opt.num.sqrt)

    def parameter(rec):
        out = nested(u.old.shape)
        for idx in _cells(u.old.shape):
            denom = _sqrt(v[idx], opt.num.sqrt) / root_c2 + eps
            _set(out, idx, u.old[idx] - step_size * m[idx] / denom)
            if rec:
                rec.term(idx, ("old", idx, u.old[idx]))
                rec.term(idx, (f"−{_g(lr)}/(1 − {_g(o['betas'][0])}^{t})", None, -step_size), ("m", idx, m[idx]),
                         (f"1/(√{v_name}/√(1 − {_g(o['betas'][1])}^{t}) + {_g(eps)})", idx, 1 / denom))
        return num.array(out)
    rule = (f"{u.names['new']} = {u.names['old']} − {_g(lr)}/(1 − {_g(b1)}^{t}) · {m_name} / "
            f"(√{v_name} / √(1 − {_g(b2)}^{t}) + {_g(eps)})")
    correction = f" (step {t}: 1 − {_g(b1)}^{t} = {_g(c1)}, 1 − {_g(b2)}^{t} = {_g(c2)})"
    u.stage("new", rule + correction, parameter, {"m": m_name, "v": v_name})
    return {"exp_avg": m, "exp_avg_sq": v, "step": t}


def _rmsprop(opt, u):
    lr, o, num = opt.lr, opt.options, opt.num
    alpha, eps, mu = o["alpha"], o["eps"], o["momentum"]
    g, g_role, g_text = _decayed(opt, u)
    name = u.names["state"]
    s0 = u.previous.get("square_avg")
    before = u.before("square_avg")

    square = _moving_average(opt.num, u.old.shape, s0, alpha, g, g_role, squared=True)
    sq = u.stage("square_avg", f"{name('square_avg')} = " + (f"{_g(alpha)} · {before} + " if before else "")
                 + f"(1 − {_g(alpha)}) · {g_text}²", square, {"before": before})
    state = {"square_avg": sq, "step": u.step + 1}
    if o["centered"]:
        a0, before_a = u.previous.get("grad_avg"), u.before("grad_avg")

        average = _moving_average(opt.num, u.old.shape, a0, alpha, g, g_role)
        ga = state["grad_avg"] = u.stage(
            "grad_avg", f"{name('grad_avg')} = " + (f"{_g(alpha)} · {before_a} + " if before_a else "")
            + f"(1 − {_g(alpha)}) · {g_text}", average, {"before": before_a})
        denom = _roots(opt.num, sq - ga * ga) + eps
        denom_text = f"(√({name('square_avg')} − {name('grad_avg')}²) + {_g(eps)})"
    else:
        denom = _roots(opt.num, sq) + eps
        denom_text = f"(√{name('square_avg')} + {_g(eps)})"
    if mu > 0:
        b0, before_b = u.previous.get("momentum_buffer"), u.before("momentum_buffer")

        def momentum(rec):
            out = nested(u.old.shape)
            for idx in _cells(u.old.shape):
                b = 0 if b0 is None else b0[idx]
                _set(out, idx, mu * b + g[idx] / denom[idx])
                if rec:
                    if b0 is not None:
                        rec.term(idx, (_g(mu), None, mu), ("before", idx, b))
                    rec.term(idx, (g_role, idx, g[idx]), (f"1/{denom_text}", idx, 1 / denom[idx]))
            return num.array(out)
        buf = state["momentum_buffer"] = u.stage(
            "momentum_buffer", f"{name('momentum_buffer')} = " + (f"{_g(mu)} · {before_b} + " if before_b else "")
            + f"{g_text} / {denom_text}", momentum, {"before": before_b})

        def parameter(rec):
            out = nested(u.old.shape)
            for idx in _cells(u.old.shape):
                _set(out, idx, u.old[idx] - lr * buf[idx])
                if rec:
                    rec.term(idx, ("old", idx, u.old[idx]))
                    rec.term(idx, (f"−{_g(lr)}", None, -lr), ("buf", idx, buf[idx]))
            return num.array(out)
        u.stage("new", f"{u.names['new']} = {u.names['old']} − {_g(lr)} · {name('momentum_buffer')}", parameter,
                {"buf": name("momentum_buffer")})
        return state

    def parameter(rec):
        out = nested(u.old.shape)
        for idx in _cells(u.old.shape):
            _set(out, idx, u.old[idx] - lr * g[idx] / denom[idx])
            if rec:
                rec.term(idx, ("old", idx, u.old[idx]))
                rec.term(idx, (f"−{_g(lr)}", None, -lr), (g_role, idx, g[idx]), (f"1/{denom_text}", idx, 1 / denom[idx]))
        return num.array(out)
    u.stage("new", f"{u.names['new']} = {u.names['old']} − {_g(lr)} · {g_text} / {denom_text}", parameter, {})
    return state


def _adagrad(opt, u):
    lr, o, num = opt.lr, opt.options, opt.num
    eps = o["eps"]
    t = u.step + 1
    clr = lr / (1 + (t - 1) * o["lr_decay"])
    g, g_role, g_text = _decayed(opt, u)
    s0 = u.previous.get("sum")
    if s0 is None:       # torch: the accumulator starts at initial_accumulator_value
        s0 = opt.num.zeros(u.old.shape) + o["initial_accumulator_value"]
    before = u.before("sum") or _g(o["initial_accumulator_value"])
    name = u.names["state"]("sum")

    def accumulate(rec):
        out = nested(u.old.shape)
        for idx in _cells(u.old.shape):
            _set(out, idx, s0[idx] + g[idx] * g[idx])
            if rec:
                rec.term(idx, ("before", idx, s0[idx]))
                rec.term(idx, (g_role, idx, g[idx]), (g_role, idx, g[idx]))
        return num.array(out)
    total = u.stage("sum", f"{name} = {before} + {g_text}²", accumulate,
                    {"before": before if u.before("sum") else "initial"})

    def parameter(rec):
        out = nested(u.old.shape)
        for idx in _cells(u.old.shape):
            denom = _sqrt(total[idx], opt.num.sqrt) + eps
            _set(out, idx, u.old[idx] - clr * g[idx] / denom)
            if rec:
                rec.term(idx, ("old", idx, u.old[idx]))
                rec.term(idx, (f"−{_g(clr)}", None, -clr), (g_role, idx, g[idx]),
                         (f"1/(√{name} + {_g(eps)})", idx, 1 / denom))
        return num.array(out)
    rate = _g(lr) if not o["lr_decay"] else f"{_g(lr)}/(1 + {t - 1}·{_g(o['lr_decay'])})"
    u.stage("new", f"{u.names['new']} = {u.names['old']} − {rate} · {g_text} / (√{name} + {_g(eps)})",
            parameter, {})
    return {"sum": total, "step": t}


def _sqrt(value, sqrt=math.sqrt):
    """√value by the number system's root; nan (reported by the engine with the step's name)
    where a pinned or checked value made a square average negative, as torch's sqrt gives."""
    return sqrt(value) if value >= 0 else math.nan


def _roots(num, values):
    """_sqrt of each element of an array."""
    return num.array([_sqrt(v, num.sqrt) for v in values.reshape(-1).tolist()]).reshape(values.shape)


def _set(out, idx, value):
    """out[idx] = value on a nested list."""
    for i in idx[:-1]:
        out = out[i]
    if idx:
        out[idx[-1]] = value


UPDATES = {"sgd": _sgd, "adam": _adam, "rmsprop": _rmsprop, "adagrad": _adagrad}
