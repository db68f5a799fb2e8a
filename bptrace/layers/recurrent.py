"""Recurrent layers through time: rnn, lstm, gru, with PyTorch's parameters and gate orders.

Input [N][T][features] (a [T][features] input is one sequence); output `L.h` [N][T][hidden]
(`return: sequence`, the default) or its last time step [N][hidden] (`return: last`).
Parameters as torch.nn.RNN / LSTM / GRU (one layer, batch_first): `weight_ih`
[gates·hidden][features], `weight_hh` [gates·hidden][hidden], `bias_ih`, `bias_hh`
[gates·hidden], the gate blocks one after another in PyTorch's order (LSTM i, f, g, o;
GRU r, z, n).  Per time step, with pre = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh split by gate:

    rnn:  h_t = tanh(pre)                         (or relu)
    lstm: i, f, o = σ(pre_i), σ(pre_f), σ(pre_o); g = tanh(pre_g)
          c_t = f ⊙ c_{t−1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)
    gru:  r, z = σ(pre_r), σ(pre_z);  n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t−1} + b_hn))
          h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

Backward through time runs t = T−1 … 0: `L.h.delta` at t is what the output sends back at t
plus what step t+1 sends back through W_hh (the path through the next time step), LSTM's
`L.c.delta` likewise through f; the gradients add every time step's share.

The loops are written with + − · and `formula.apply` for tanh and σ, so that they run on
floats and, for the float-noise bounds, on `formula.Noisy` values (floats with an interval),
and on another number type given its operators.
"""
from __future__ import annotations

import numpy as np

from ..formula import NOISY, Noisy, apply, plain, radius, side
from ..notation import Paren, Power, Ref, Sum, Text, Word, add, eq, func, had, prod, seq, sub, sym, transposed
from ..spec import shape_words
from ..tensors import fits
from .base import Layer, _parameter, as_array, nested


def sigmoid(z):
    return apply("sigmoid", z)


def tanh(z):
    return apply("tanh", z)


class Recurrent(Layer):
    keys = frozenset({"hidden", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0", "return"})
    param_roles = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    in_delta_reads = ("h.delta", "weight_ih")
    grad_reads = {"weight_ih": ("h.delta", "in"), "weight_hh": ("h.delta", "h"),
                  "bias_ih": ("h.delta",), "bias_hh": ("h.delta",)}
    gates: tuple = ()          # PyTorch's gate blocks, in order
    cell_state = False
    through_time = True        # h.delta takes the path through the next time step (the mistake catalog turns it off)

    @classmethod
    def build(cls, name, spec, ctx):
        shape = ctx.in_shape
        if len(shape) != 3:
            found = f"{shape[1]} features" if len(shape) == 2 else "a feature map"
            raise spec.error("type", f"{cls.type} reads a sequence, [T][features] or [N][T][features], but "
                                     f"{ctx.previous} makes {found}",
                             "write the input as one row of features per time step")
        N, T, F = shape
        blocks = max(len(cls.gates), 1)
        hidden = spec.integer("hidden", None, minimum=1)
        if hidden is None:
            if "weight_hh" not in spec:
                raise spec.error(None, f"{cls.type} needs `hidden:`, the size of its hidden state")
            hidden = spec.tensor("weight_hh", what="weight_hh").shape[-1]
        layer = cls(name, shape)
        layer.hidden = H = hidden
        layer.returns = spec.choice("return", ("sequence", "last"), "sequence")
        if cls.type == "rnn":
            layer.nonlinearity = spec.choice("nonlinearity", ("tanh", "relu"), "tanh")
        rows = blocks * H
        each = f" ({', '.join(cls.gates)} blocks of {H} rows)" if cls.gates else ""
        layer.params = {
            "weight_ih": _parameter(spec, "weight_ih", (rows, F), ctx, (F, rows), f"{cls.type} weight_ih{each}"),
            "weight_hh": _parameter(spec, "weight_hh", (rows, H), ctx, (H, rows), f"{cls.type} weight_hh{each}"),
            "bias_ih": _vector(spec, "bias_ih", rows, f"{cls.type} bias_ih"),
            "bias_hh": _vector(spec, "bias_hh", rows, f"{cls.type} bias_hh"),
        }
        layer.h0 = _state(spec, "h0", N, H)
        if cls.cell_state:
            layer.c0 = _state(spec, "c0", N, H)
        layer._initial = {"h0": layer.h0, "c0": getattr(layer, "c0", None)}     # as floats, until `use`
        layer.out_shape = (N, T, H) if layer.returns == "sequence" else (N, H)
        layer.extra_shapes = {extra: (N, T, H) for extra in layer.extras + layer.backward_extras}
        return layer

    def multiply_adds(self) -> int:
        N, T, F = self.in_shape
        rows = max(len(self.gates), 1) * self.hidden
        return 6 * N * T * rows * (F + self.hidden + 4)

    def noise_terms(self) -> int:
        return self.in_shape[2] + self.hidden + 2

    @property
    def decides(self):
        # a relu RNN compares each pre-activation with 0, on paper: within its noise bound of
        # 0 is 0, as the relu layer decides (so the engine bounds what it reads)
        return getattr(self, "nonlinearity", "tanh") == "relu"

    def use(self, num):
        super().use(num)
        # h0 and c0 start the loops: the number system's numbers, like the parameters (the
        # floats stay for the noise bounds, which read them as written decimals)
        self._initial = {key: num.tensor(np.asarray(getattr(self, key))).tolist() if hasattr(self, key) else None
                         for key in ("h0", "c0")}

    # --- the passes: `_forward` and `_backward` hold the loops, on any number type ---------

    def _args(self, x, p, bounds=None):
        """The loops' input and parameters (with h0, c0) as lists: the number system's, or with
        `bounds` (role -> noise bound) Noisy values, h0 and c0 as written decimals."""
        if bounds is None:
            return x.tolist(), {**self._initial, **{r: v.tolist() for r, v in p.items()}}
        initial = {key: _written(getattr(self, key)) for key in ("h0", "c0") if hasattr(self, key)}
        return _noisy(x.tolist(), bounds["in"].tolist()), \
            {**initial, **{r: _noisy(v.tolist(), bounds[r].tolist()) for r, v in p.items()}}

    def forward(self, x, p, recs, stage=None):
        settle = getattr(stage, "settle", None)
        # with bounds the loops run on intervals: every inner value gets its noise bound
        bounds = getattr(stage, "bounds", None)
        raw, kept = self._forward(*self._args(x, p, bounds), settle)
        self._kept = {}
        for name in self.extras:
            values = self.num.array(_plain(raw[name]))
            noise = as_array(_radii(raw[name])) if bounds is not None else None
            self._kept[name] = (stage(name, values, reads=("in",) + self.param_roles, noise=noise)
                                if stage else values).tolist()
        return self._output(self.num.array(self._kept["h"]))

    def _output(self, h):
        return h if self.returns == "sequence" else h[:, -1, :]

    def backward(self, x, out, delta, p, recs, stage=None):
        settle = getattr(stage, "settle", None)
        # the inner values as the forward pass kept them (rounded, given)
        kept = getattr(stage, "values", None)
        kept = {name: kept[name].tolist() for name in self.extras} if kept else self._kept
        grads, dx, raw = self._backward(*self._args(x, p), kept, self._delta_at_h(delta.tolist()), settle, recs)
        bounds = getattr(stage, "bounds", None)
        noisy = None
        if bounds is not None:
            # the same loops on intervals, from the inner values as kept with their bounds
            kept_noisy = {name: _noisy(kept[name], bounds[name].tolist()) for name in self.extras}
            grads_noisy, dx_noisy, noisy = self._backward(*self._args(x, p, bounds), kept_noisy,
                                                          self._delta_at_h(_noisy(delta.tolist(),
                                                                                  bounds["delta"].tolist())),
                                                          settle, {})
            # backward_noise, called next for these same values, returns them
            self._bounds = {**{role: as_array(_radii(grads_noisy[role])) for role in self.param_roles},
                            "in": as_array(_radii(dx_noisy))}
        for name in self.backward_extras:
            values = self.num.array(raw[name])
            if stage:
                stage(name, values, reads=("delta",) + self.param_roles,
                      noise=as_array(_radii(noisy[name])) if noisy else None)
        result = {role: self.num.array(grads[role]) for role in self.param_roles}
        result["in"] = self.num.array(dx)
        return result

    def _delta_at_h(self, delta):
        """What the layer's output sends back to each h_t ([N][T][H]): all of it for a
        sequence, the last time step's alone for `return: last`."""
        N, T, _ = self.in_shape
        if self.returns == "sequence":
            return delta
        zero = 0 * delta[0][0]
        return [[delta[n] if t == T - 1 else [zero] * self.hidden for t in range(T)] for n in range(N)]

    def _settle(self, settle, kept, raw, name, t):
        """Time step t of `name` as on paper (rounded, pinned), for the steps after it."""
        if settle is None:
            return
        values = settle(name, self.num.array(_plain(raw[name]))).tolist()
        for n in range(len(kept[name])):
            # a rounded or given number is exact, as written; one left as computed keeps its interval
            kept[name][n][t] = [v if v != plain(r) else r for v, r in zip(values[n][t], raw[name][n][t])]

    def _forward(self, x, p, settle=None):
        """Every extra, [N][T][H], computed (`raw`) and as the later time steps use it (`kept`)."""
        N, T, F = self.in_shape
        H, G = self.hidden, max(len(self.gates), 1)
        W_ih, W_hh, b_ih, b_hh = (p[r] for r in self.param_roles)
        raw = {name: nested((N, T, H)) for name in self.extras}
        kept = {name: nested((N, T, H)) for name in self.extras}
        for t in range(T):
            pre_x = [[b_ih[j] + sum(W_ih[j][k] * x[n][t][k] for k in range(F)) for j in range(G * H)]
                     for n in range(N)]
            h_prev = [p["h0"][n] if t == 0 else kept["h"][n][t - 1] for n in range(N)]
            pre_h = [[b_hh[j] + sum(W_hh[j][k] * h_prev[n][k] for k in range(H)) for j in range(G * H)]
                     for n in range(N)]
            self._cell(t, pre_x, pre_h, h_prev, raw, kept, settle, p)
        return raw, kept

    def _step(self, name, t, values, raw, kept, settle):
        """Store time step t of `name` ([N][H]) and settle it."""
        for n, row in enumerate(values):
            raw[name][n][t] = list(row)
            kept[name][n][t] = list(row)
        self._settle(settle, kept, raw, name, t)

    def forward_noise(self, x, p, out, noise):
        _, kept = self._forward(*self._args(x, p, noise))
        return self._output(as_array(_radii(kept["h"])))

    def backward_noise(self, x, out, delta, p, noise):
        made, self._bounds = getattr(self, "_bounds", None), None
        if made is not None:        # backward has just run the intervals from the values as kept
            return made
        xs, ps = self._args(x, p, noise)
        _, kept = self._forward(xs, ps)
        ds = self._delta_at_h(_noisy(delta.tolist(), noise["delta"].tolist()))
        grads, dx, _ = self._backward(xs, ps, kept, ds, None, {})
        result = {role: as_array(_radii(grads[role])) for role in self.param_roles}
        result["in"] = as_array(_radii(dx))
        return result

    def _backward(self, x, p, kept, dh_out, settle, recs):
        """Back through time.  Each time step gives, per sample, the error at each gate's
        pre-activation (`dx_pre`, what W_ih and b_ih see; `dh_pre`, what W_hh and b_hh see:
        the same but for GRU's n gate, which reaches W_hn through r); their factors are kept
        for the recorded terms."""
        N, T, F = self.in_shape
        H, G = self.hidden, max(len(self.gates), 1)
        W_ih, W_hh = p["weight_ih"], p["weight_hh"]
        zero = 0 * dh_out[0][0][0]
        grads = {"weight_ih": nested((G * H, F), zero), "weight_hh": nested((G * H, H), zero),
                 "bias_ih": nested((G * H,), zero), "bias_hh": nested((G * H,), zero)}
        dx = nested((N, T, F), zero)
        raw = {name: nested((N, T, H)) for name in self.backward_extras}
        back = {name: nested((N, T, H)) for name in self.backward_extras}
        carry = {"h": nested((N, H), zero), "c": nested((N, H), zero)}
        rec_in, rec_h = recs.get("in"), recs.get("h.delta")
        rec_g = {role: recs.get(role) for role in self.param_roles}
        for t in reversed(range(T)):
            later = carry["h"]
            self._step_back("h.delta", t, [[dh_out[n][t][j] + later[n][j] for j in range(H)] for n in range(N)],
                            raw, back, settle)
            if rec_h and (self.returns == "sequence" or t == T - 1):
                for n in range(N):
                    for j in range(H):
                        rec_h.term((n, t, j), ("delta", (n, t, j) if self.returns == "sequence" else (n, j),
                                               dh_out[n][t][j]))
            h_prev = [p["h0"][n] if t == 0 else kept["h"][n][t - 1] for n in range(N)]
            dx_pre, dh_pre = self._cell_back(t, x, p, kept, back, raw, carry, h_prev, settle)
            for n in range(N):
                for j in range(G * H):
                    value, factors = dx_pre[n][j]
                    h_value, h_factors = dh_pre[n][j]
                    grads["bias_ih"][j] = grads["bias_ih"][j] + value
                    grads["bias_hh"][j] = grads["bias_hh"][j] + h_value
                    if rec_g["bias_ih"]:
                        rec_g["bias_ih"].term((j,), *factors)
                    if rec_g["bias_hh"]:
                        rec_g["bias_hh"].term((j,), *h_factors)
                    for k in range(F):
                        grads["weight_ih"][j][k] = grads["weight_ih"][j][k] + value * x[n][t][k]
                        if rec_g["weight_ih"]:
                            rec_g["weight_ih"].term((j, k), *factors, ("in", (n, t, k), x[n][t][k]))
                    for k in range(H):
                        grads["weight_hh"][j][k] = grads["weight_hh"][j][k] + h_value * h_prev[n][k]
                        if rec_g["weight_hh"]:
                            rec_g["weight_hh"].term((j, k), *h_factors, _h_factor(n, t, k, h_prev[n][k]))
                for k in range(F):
                    dx[n][t][k] = sum((W_ih[j][k] * dx_pre[n][j][0] for j in range(G * H)), zero)
                    if rec_in:
                        for j in range(G * H):
                            rec_in.term((n, t, k), ("weight_ih", (j, k), W_ih[j][k]), *dx_pre[n][j][1])
                for k in range(H):
                    # the path through the next time step: what step t sends back to h_{t−1}
                    later[n][k] = sum((W_hh[j][k] * dh_pre[n][j][0] for j in range(G * H)), zero) + \
                        self._carried(t, n, k, back, kept)
                    if not self.through_time:
                        later[n][k] = zero
                    if rec_h and t > 0:
                        for j in range(G * H):
                            rec_h.term((n, t - 1, k), ("weight_hh", (j, k), W_hh[j][k]), *dh_pre[n][j][1])
                        self._carried_terms(rec_h, t, n, k, back, kept)
            carry["h"] = later
        return grads, dx, raw

    def _carried(self, t, n, k, back, kept):
        """A direct path from h_t to h_{t−1} besides W_hh (GRU's z ⊙ h_{t−1})."""
        return 0

    def _carried_terms(self, rec, t, n, k, back, kept):
        pass

    def _step_back(self, name, t, values, raw, back, settle):
        self._step(name, t, values, raw, back, settle)

    def roles(self, n):
        roles = super().roles(n)
        roles["h0"] = f"{n.layer}.h0"
        return roles

    def _weights_rule(self, n, block: str, x, h):
        """W_ih·x + b_ih + W_hh·h + b_hh, each parameter's rows `block` of it (all rows if "")."""
        gate = (block,) if block else ()
        return add(prod(Ref(n.param("weight_ih"), gate), x, spaced=False), Ref(n.param("bias_ih"), gate),
                   prod(Ref(n.param("weight_hh"), gate), h, spaced=False), Ref(n.param("bias_hh"), gate))

    def _common_rules(self, n, x_delta_rule):
        L = n.layer
        out = eq(Ref(n.out), Ref(f"{L}.h")) if self.returns == "sequence" else \
            eq(Ref(n.out, ("n", ":")), seq(Ref(f"{L}.h", ("n", "T−1", ":")), "  (return: last)"))
        rules = {"out": out,
                 "h.delta": eq(_at(f"{L}.h.delta"),
                               seq(add(_at(n.delta), seq("(what step t+1 sends back through ",
                                                         Ref(n.param("weight_hh")), ")")), "  (t = T−1 … 0)")),
                 "in": eq(_at(n.x_delta), x_delta_rule)}
        for role in self.param_roles:
            rules[role] = eq(Ref(n.grad(role)), Sum(("t",), Text("(its share at time step t)")))
        return rules

    def _gates_delta_rule(self, n):
        return Sum((), seq("over the gates of ", prod(transposed(Ref(n.param("weight_ih"))),
                                                      Paren(Text("gate delta ⊙ its σ′ or tanh′")))))


def _at(name, t="t"):
    """`name[t]`: a value at time step t."""
    return Ref(name, (t,))


def _h_factor(n, t, k, value):
    # h0 by its element, as any factor: the written sum shows its value, not the name alone
    return ("h", (n, t - 1, k), value) if t > 0 else ("h0", (n, k), value)


class RNN(Recurrent):
    """Elman RNN (torch.nn.RNN): h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh), or relu."""
    type = "rnn"
    keys = Recurrent.keys | {"nonlinearity"}
    extras = ("h",)
    backward_extras = ("h.delta",)
    nonlinearity = "tanh"

    def _cell(self, t, pre_x, pre_h, h_prev, raw, kept, settle, p):
        act = tanh if self.nonlinearity == "tanh" else _relu
        self._step("h", t, [[act(px + ph) for px, ph in zip(pre_x[n], pre_h[n])] for n in range(len(pre_x))],
                   raw, kept, settle)

    def _cell_back(self, t, x, p, kept, back, raw, carry, h_prev, settle):
        N, H = len(x), self.hidden
        rows = []
        for n in range(N):
            row = []
            for j in range(H):
                h, hd = kept["h"][n][t][j], back["h.delta"][n][t][j]
                if self.nonlinearity == "tanh":
                    slope, label = (1 - h) * (1 + h), "(1 − h²)"
                else:
                    slope = 1 if side(h) > 0 else 0
                    label = "1 (h > 0)" if slope else "0 (h ≤ 0)"
                row.append((hd * slope, (("h.delta", (n, t, j), hd), (label, (n, t, j), plain(slope)))))
            rows.append(row)
        return rows, rows

    def rules(self, n):
        L = n.layer
        f = self.nonlinearity
        rules = self._common_rules(n, prod(transposed(Ref(n.param("weight_ih"))),
                                           Paren(had(_at(f"{L}.h.delta"), seq(Word(f), sym("′"))))))
        rules["h"] = eq(_at(f"{L}.h"), seq(func(f, self._weights_rule(n, "", _at(n.x), _at(f"{L}.h", "t−1"))),
                                           "  (h[−1] = h0)"))
        return rules


def _relu(z):
    return z if side(z) > 0 else 0 * z


class LSTM(Recurrent):
    """LSTM (torch.nn.LSTM): gates i, f, g, o; c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t)."""
    type = "lstm"
    keys = Recurrent.keys | {"c0"}
    gates = ("i", "f", "g", "o")
    cell_state = True
    extras = ("gate.i", "gate.f", "gate.g", "gate.o", "c", "h")
    backward_extras = ("h.delta", "c.delta", "gate.i.delta", "gate.f.delta", "gate.g.delta", "gate.o.delta")

    def _cell(self, t, pre_x, pre_h, h_prev, raw, kept, settle, p):
        N, H = len(pre_x), self.hidden
        z = [[pre_x[n][j] + pre_h[n][j] for j in range(4 * H)] for n in range(N)]
        for b, (gate, act) in enumerate(zip(self.gates, (sigmoid, sigmoid, tanh, sigmoid))):
            self._step(f"gate.{gate}", t, [[act(z[n][b * H + j]) for j in range(H)] for n in range(N)],
                       raw, kept, settle)
        i, f, g, o = (kept[f"gate.{gate}"] for gate in self.gates)
        c_prev = [p["c0"][n] if t == 0 else kept["c"][n][t - 1] for n in range(N)]
        self._step("c", t, [[f[n][t][j] * c_prev[n][j] + i[n][t][j] * g[n][t][j] for j in range(H)]
                            for n in range(N)], raw, kept, settle)
        c = kept["c"]
        self._step("h", t, [[o[n][t][j] * tanh(c[n][t][j]) for j in range(H)] for n in range(N)], raw, kept, settle)

    def _cell_back(self, t, x, p, kept, back, raw, carry, h_prev, settle):
        N, H = len(x), self.hidden
        i, f, g, o, c = (kept[name] for name in ("gate.i", "gate.f", "gate.g", "gate.o", "c"))
        hd = back["h.delta"]
        tc = [[tanh(c[n][t][j]) for j in range(H)] for n in range(N)]
        # c.delta: through h_t (o ⊙ tanh′(c_t)) plus the path through c_{t+1} (⊙ f_{t+1})
        self._step_back("c.delta", t, [[carry["c"][n][j] + hd[n][t][j] * o[n][t][j] * (1 - tc[n][j]) * (1 + tc[n][j])
                                        for j in range(H)] for n in range(N)], raw, back, settle)
        cd = back["c.delta"]
        c_prev = [p["c0"][n] if t == 0 else c[n][t - 1] for n in range(N)]
        parts = {"i": lambda n, j: cd[n][t][j] * g[n][t][j], "f": lambda n, j: cd[n][t][j] * c_prev[n][j],
                 "g": lambda n, j: cd[n][t][j] * i[n][t][j], "o": lambda n, j: hd[n][t][j] * tc[n][j]}
        for gate in self.gates:
            self._step_back(f"gate.{gate}.delta", t, [[parts[gate](n, j) for j in range(H)] for n in range(N)],
                            raw, back, settle)
        carry["c"] = [[cd[n][t][j] * f[n][t][j] if self.through_time else 0 * cd[n][t][j] for j in range(H)]
                      for n in range(N)]
        rows = []
        for n in range(N):
            row = []
            for b, gate in enumerate(self.gates):
                for j in range(H):
                    a, d = kept[f"gate.{gate}"][n][t][j], back[f"gate.{gate}.delta"][n][t][j]
                    slope, label = ((1 - a) * (1 + a), "(1 − g²)") if gate == "g" else (a * (1 - a), f"{gate}(1 − {gate})")
                    row.append((d * slope, ((f"gate.{gate}.delta", (n, t, j), d), (label, (n, t, j), plain(slope)))))
            rows.append(row)
        return rows, rows

    def rules(self, n):
        L = n.layer
        rules = self._common_rules(n, self._gates_delta_rule(n))
        for b, (gate, act) in enumerate(zip(self.gates, ("σ", "σ", "tanh", "σ"))):
            block = f"{b * self.hidden}:{(b + 1) * self.hidden}"
            rules[f"gate.{gate}"] = eq(_at(f"{L}.gate.{gate}"),
                                       func(act, self._weights_rule(n, block, _at(n.x), _at(f"{L}.h", "t−1"))))
        g = {name: _at(f"{L}.gate.{name}") for name in self.gates}
        c, h_delta, c_delta = _at(f"{L}.c"), _at(f"{L}.h.delta"), _at(f"{L}.c.delta")
        rules["c"] = eq(c, seq(add(had(g["f"], _at(f"{L}.c", "t−1")), had(g["i"], g["g"])), "  (c[−1] = c0)"))
        rules["h"] = eq(_at(f"{L}.h"), seq(had(g["o"], func("tanh", c)), "  (h[−1] = h0)"))
        rules["c.delta"] = eq(c_delta, add(had(h_delta, g["o"], Paren(sub(1, func("tanh²", c)))),
                                           had(_at(f"{L}.c.delta", "t+1"), _at(f"{L}.gate.f", "t+1"))))
        rules["gate.i.delta"] = eq(_at(f"{L}.gate.i.delta"), had(c_delta, g["g"]))
        rules["gate.f.delta"] = eq(_at(f"{L}.gate.f.delta"), had(c_delta, _at(f"{L}.c", "t−1")))
        rules["gate.g.delta"] = eq(_at(f"{L}.gate.g.delta"), had(c_delta, g["i"]))
        rules["gate.o.delta"] = eq(_at(f"{L}.gate.o.delta"), had(h_delta, func("tanh", c)))
        return rules


class GRU(Recurrent):
    """GRU (torch.nn.GRU): gates r, z, n; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}."""
    type = "gru"
    gates = ("r", "z", "n")
    extras = ("gate.r", "gate.z", "gate.n", "h")
    backward_extras = ("h.delta", "gate.r.delta", "gate.z.delta", "gate.n.delta")

    def _cell(self, t, pre_x, pre_h, h_prev, raw, kept, settle, p):
        N, H = len(pre_x), self.hidden
        for b, gate in enumerate(("r", "z")):
            self._step(f"gate.{gate}", t, [[sigmoid(pre_x[n][b * H + j] + pre_h[n][b * H + j]) for j in range(H)]
                                           for n in range(N)], raw, kept, settle)
        r, z = kept["gate.r"], kept["gate.z"]
        self._step("gate.n", t, [[tanh(pre_x[n][2 * H + j] + r[n][t][j] * pre_h[n][2 * H + j]) for j in range(H)]
                                 for n in range(N)], raw, kept, settle)
        g = kept["gate.n"]
        self._step("h", t, [[(1 - z[n][t][j]) * g[n][t][j] + z[n][t][j] * h_prev[n][j] for j in range(H)]
                            for n in range(N)], raw, kept, settle)

    def _cell_back(self, t, x, p, kept, back, raw, carry, h_prev, settle):
        N, H = len(x), self.hidden
        W_hh, b_hh = p["weight_hh"], p["bias_hh"]
        r, z, g = kept["gate.r"], kept["gate.z"], kept["gate.n"]
        hd = back["h.delta"]
        self._step_back("gate.z.delta", t, [[hd[n][t][j] * (h_prev[n][j] - g[n][t][j]) for j in range(H)]
                                            for n in range(N)], raw, back, settle)
        self._step_back("gate.n.delta", t, [[hd[n][t][j] * (1 - z[n][t][j]) for j in range(H)] for n in range(N)],
                        raw, back, settle)
        # W_hn h_{t−1} + b_hn: what r multiplies
        hn = [[b_hh[2 * H + j] + sum(W_hh[2 * H + j][k] * h_prev[n][k] for k in range(H)) for j in range(H)]
              for n in range(N)]
        nd = back["gate.n.delta"]
        pre_n = [[nd[n][t][j] * (1 - g[n][t][j]) * (1 + g[n][t][j]) for j in range(H)] for n in range(N)]
        self._step_back("gate.r.delta", t, [[pre_n[n][j] * hn[n][j] for j in range(H)] for n in range(N)],
                        raw, back, settle)
        x_rows, h_rows = [], []
        for n in range(N):
            x_row, h_row = [], []
            for gate in ("r", "z"):
                for j in range(H):
                    a, d = kept[f"gate.{gate}"][n][t][j], back[f"gate.{gate}.delta"][n][t][j]
                    entry = (d * a * (1 - a), ((f"gate.{gate}.delta", (n, t, j), d),
                                               (f"{gate}(1 − {gate})", (n, t, j), plain(a * (1 - a)))))
                    x_row.append(entry)
                    h_row.append(entry)
            for j in range(H):
                d, a = nd[n][t][j], g[n][t][j]
                slope = (1 - a) * (1 + a)
                factors = (("gate.n.delta", (n, t, j), d), ("(1 − n²)", (n, t, j), plain(slope)))
                x_row.append((d * slope, factors))
                h_row.append((d * slope * r[n][t][j], factors + (("gate.r", (n, t, j), r[n][t][j]),)))
            x_rows.append(x_row)
            h_rows.append(h_row)
        return x_rows, h_rows

    def _carried(self, t, n, k, back, kept):
        return back["h.delta"][n][t][k] * kept["gate.z"][n][t][k]

    def _carried_terms(self, rec, t, n, k, back, kept):
        rec.term((n, t - 1, k), ("h.delta", (n, t, k), back["h.delta"][n][t][k]),
                 ("gate.z", (n, t, k), kept["gate.z"][n][t][k]))

    def rules(self, n):
        L, H = n.layer, self.hidden
        rules = self._common_rules(n, self._gates_delta_rule(n))
        h_prev, h_delta = _at(f"{L}.h", "t−1"), _at(f"{L}.h.delta")
        g = {name: _at(f"{L}.gate.{name}") for name in self.gates}
        for b, gate in enumerate(("r", "z")):
            rules[f"gate.{gate}"] = eq(g[gate], func("σ", self._weights_rule(n, f"{b * H}:{(b + 1) * H}", _at(n.x), h_prev)))
        rest = (f"{2 * H}:",)
        hidden_part = Paren(add(prod(Ref(n.param("weight_hh"), rest), h_prev, spaced=False), Ref(n.param("bias_hh"), rest)))
        rules["gate.n"] = eq(g["n"], func("tanh", add(prod(Ref(n.param("weight_ih"), rest), _at(n.x), spaced=False),
                                                      Ref(n.param("bias_ih"), rest), had(g["r"], hidden_part))))
        rules["h"] = eq(_at(f"{L}.h"), seq(add(had(Paren(sub(1, g["z"])), g["n"]), had(g["z"], h_prev)), "  (h[−1] = h0)"))
        rules["h.delta"] = eq(h_delta, seq(add(_at(n.delta),
                                               prod(transposed(Ref(n.param("weight_hh"))),
                                                    Paren(Text("step t+1's gate errors")), spaced=False),
                                               had(_at(f"{L}.h.delta", "t+1"), _at(f"{L}.gate.z", "t+1"))),
                                           "  (t = T−1 … 0)"))
        rules["gate.z.delta"] = eq(_at(f"{L}.gate.z.delta"), had(h_delta, Paren(sub(h_prev, g["n"]))))
        rules["gate.n.delta"] = eq(_at(f"{L}.gate.n.delta"), had(h_delta, Paren(sub(1, g["z"]))))
        rules["gate.r.delta"] = eq(_at(f"{L}.gate.r.delta"),
                                   had(_at(f"{L}.gate.n.delta"), Paren(sub(1, Power(g["n"], "2"))), hidden_part))
        return rules


# --- reading the parameters -------------------------------------------------------------

def _vector(spec, key, count, what):
    if key not in spec:
        return as_array([0.0] * count)
    values = spec.tensor(key, what=what)
    if values.ndim == 0:
        return as_array([float(values)] * count)
    if not fits(values.shape, (count,)):
        raise spec.error(key, f"{what} should be {shape_words((count,))}, found {shape_words(values.shape)}",
                         "or one number for all of them")
    return values.reshape(count)


def _state(spec, key, N, H):
    """h0 / c0: [hidden] (every sample), [N][hidden] or PyTorch's [1][N][hidden]; zeros if absent."""
    if key not in spec:
        return [[0.0] * H for _ in range(N)]
    values = spec.tensor(key, what=key)
    if fits(values.shape, (H,)):
        return [values.reshape(H).tolist() for _ in range(N)]
    if fits(values.shape, (N, H)):
        return values.reshape(N, H).tolist()
    forms = shape_words((H,)) + (f" (every sample) or {shape_words((N, H))}" if N > 1 else "")
    raise spec.error(key, f"{key} should be {forms} (hidden = {H}), found {shape_words(values.shape)}")


def _noisy(values, bounds):
    if isinstance(values, list):
        return [_noisy(v, b) for v, b in zip(values, bounds)]
    return Noisy(values, values - bounds, values + bounds)


def _written(values):
    """h0 or c0 as Noisy values: a written decimal is one rounding away from its float."""
    if isinstance(values, list):
        return [_written(v) for v in values]
    return NOISY.number(repr(values))


def _plain(values):
    if isinstance(values, list):
        return [_plain(v) for v in values]
    return plain(values)


def _radii(values):
    if isinstance(values, list):
        return [_radii(v) for v in values]
    return radius(values)
