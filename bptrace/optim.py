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
from .notation import Frac, Func, Paren, Power, Ref, add, eq, func, op, prod, seq, sub, sym
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


def _state(before: str):
    """The state an update starts from, in a rule: the previous step's traced name, a state
    given in the scenario (`exp_avg (given)`), or a number (Adagrad's initial accumulator)."""
    try:
        return sym(_g(float(before)))
    except ValueError:
        first, _, rest = before.partition(" ")
        return seq(Ref(first), f" {rest}" if rest else "")


def _average_rule(name: str, beta, before, g):
    """name = β · before + (1 − β) · g (the first term left out when the state is fresh)."""
    return eq(Ref(name), add(*([prod(sym(_g(beta)), _state(before))] if before else []),
                             prod(Paren(sub(1, sym(_g(beta)))), g)))


def _cells(shape):
    return list(np.ndindex(*shape))


def _decayed(opt, u):
    """The gradient each formula reads: g, or g + wd·p with weight decay (torch adds it
    first), and the factor that shows it in a term: (label, index-role, values)."""
    wd = opt.options["weight_decay"]
    if not wd:
        return u.grad, "grad", Ref(u.names["grad"])
    g = u.grad + wd * u.old
    label = f"{u.names['grad']} + {_g(wd)}·{u.names['old']}"
    return g, label, Paren(add(Ref(u.names["grad"]), prod(sym(_g(wd)), Ref(u.names["old"]), spaced=False)))


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
            rule = eq(Ref(name), seq(g_text, " (the first step: the buffer starts as the gradient)"))
        else:
            kept = g_text if keep == 1 else prod(sym(_g(keep)), g_text)
            rule = eq(Ref(name), op("+" if sign > 0 else "−", prod(sym(_g(mu)), _state(before)), kept))
        buf = state["momentum_buffer"] = u.stage("momentum_buffer", rule, momentum, {"before": before})
        if o["nesterov"]:
            step = g + mu * buf
            step_text = Paren(add(g_text, prod(sym(_g(mu)), Ref(name))))
            step_terms = lambda idx: [((g_role, idx, g[idx]),), ((_g(mu), None, mu), ("buf", idx, buf[idx]))]
        elif not opt.step_reads_new_buffer():
            # the step taken with the buffer it started from (none yet: a zero step)
            before_buf = opt.num.zeros(u.old.shape) if u.previous.get("momentum_buffer") is None \
                else u.previous["momentum_buffer"]
            step, step_text = before_buf, before or "0"
            step_terms = (lambda idx: []) if before is None else (lambda idx: [(("buf", idx, before_buf[idx]),)])
        else:
            step = buf
            step_text = Ref(name)
            step_terms = lambda idx: [(("buf", idx, buf[idx]),)]
        roles = {"buf": name if opt.step_reads_new_buffer() else before}
    else:
        step_text = g_text
        step_terms = lambda idx: [((g_role, idx, g[idx]),)]
        roles = {}

    u.stage("new", eq(Ref(new_name), sub(Ref(old_name), prod(sym(_g(lr)), step_text))),
            _descent(num, u, lr, step, step_terms), roles)
    return state


def _descent(num, u, lr, step, step_terms):
    """The loop of old − lr · step, element by element (SGD's update, and RMSprop's with
    momentum, whose step is its buffer); step_terms(idx): the factors of each of the step's
    terms at idx, recorded after −lr."""
    def parameter(rec):
        out = nested(u.old.shape)
        for idx in _cells(u.old.shape):
            _set(out, idx, u.old[idx] - lr * step[idx])
            if rec:
                rec.term(idx, ("old", idx, u.old[idx]))
                for term in step_terms(idx):
                    rec.term(idx, (f"−{_g(lr)}", None, -lr), *term)
        return num.array(out)
    return parameter


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
    m = u.stage("exp_avg", _average_rule(m_name, b1, before_m, g_text), first, {"before": before_m})
    v = u.stage("exp_avg_sq", _average_rule(v_name, b2, before_v, Power(g_text, "2")), second, {"before": before_v})
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
    decay1, decay2 = sub(1, Power(sym(_g(b1)), str(t), caret=True)), sub(1, Power(sym(_g(b2)), str(t), caret=True))
    step_rule = Frac(prod(Frac(sym(_g(lr)), Paren(decay1)), Ref(m_name)),
                     Paren(add(Frac(Func("√", Ref(v_name), bare=True), func("√", decay2), spaced=True), sym(_g(eps)))),
                     spaced=True)
    rule = eq(Ref(u.names["new"]), seq(sub(Ref(u.names["old"]), step_rule), f" (step {t}: ", eq(decay1, sym(_g(c1))),
                                       ", ", eq(decay2, sym(_g(c2))), ")"))
    u.stage("new", rule, parameter, {"m": m_name, "v": v_name})
    return {"exp_avg": m, "exp_avg_sq": v, "step": t}


def _rmsprop(opt, u):
    lr, o, num = opt.lr, opt.options, opt.num
    alpha, eps, mu = o["alpha"], o["eps"], o["momentum"]
    g, g_role, g_text = _decayed(opt, u)
    name = u.names["state"]
    s0 = u.previous.get("square_avg")
    before = u.before("square_avg")

    square = _moving_average(opt.num, u.old.shape, s0, alpha, g, g_role, squared=True)
    sq = u.stage("square_avg", _average_rule(name("square_avg"), alpha, before, Power(g_text, "2")), square,
                 {"before": before})
    state = {"square_avg": sq, "step": u.step + 1}
    if o["centered"]:
        a0, before_a = u.previous.get("grad_avg"), u.before("grad_avg")

        average = _moving_average(opt.num, u.old.shape, a0, alpha, g, g_role)
        ga = state["grad_avg"] = u.stage(
            "grad_avg", _average_rule(name("grad_avg"), alpha, before_a, g_text), average, {"before": before_a})
        denom = _roots(opt.num, sq - ga * ga) + eps
        denom_rule = Paren(add(func("√", sub(Ref(name("square_avg")), Power(Ref(name("grad_avg")), "2"))), sym(_g(eps))))
    else:
        denom = _roots(opt.num, sq) + eps
        denom_rule = Paren(add(Func("√", Ref(name("square_avg")), bare=True), sym(_g(eps))))
    denom_text = str(denom_rule)
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
            "momentum_buffer", eq(Ref(name("momentum_buffer")),
                                  add(*([prod(sym(_g(mu)), _state(before_b))] if before_b else []),
                                      Frac(g_text, denom_rule, spaced=True))), momentum, {"before": before_b})

        u.stage("new", eq(Ref(u.names["new"]), sub(Ref(u.names["old"]), prod(sym(_g(lr)), Ref(name("momentum_buffer"))))),
                _descent(num, u, lr, buf, lambda idx: [(("buf", idx, buf[idx]),)]),
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
    u.stage("new", eq(Ref(u.names["new"]), sub(Ref(u.names["old"]), Frac(prod(sym(_g(lr)), g_text), denom_rule, spaced=True))),
            parameter, {})
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
    total = u.stage("sum", eq(Ref(name), add(_state(before), Power(g_text, "2"))), accumulate,
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
    rate = sym(_g(lr)) if not o["lr_decay"] else \
        Frac(sym(_g(lr)), Paren(add(1, prod(sym(t - 1), sym(_g(o["lr_decay"])), spaced=False))))
    u.stage("new", eq(Ref(u.names["new"]), sub(Ref(u.names["old"]), Frac(prod(rate, g_text),
                                                                          Paren(add(Func("√", Ref(name), bare=True),
                                                                                    sym(_g(eps)))), spaced=True))),
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
