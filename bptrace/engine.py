"""The engine: forward pass, loss, backward pass and SGD step, recorded as a `Trace`.

It walks the layers, calls each layer's own forward and backward loops, and records every
value under its BRIEF section 2 name.  After each step it applies, in this order, the
scenario's `rounding` and then any pinned values (`given`, or a checker's overrides), so
that later steps use exactly the numbers a student would have on paper.
"""
from __future__ import annotations

import numpy as np

from .errors import ScenarioError
from .layers import Names
from .rounding import round_array
from .scenario import Patch, Scenario, merge_patches, non_finite_error
from .trace import Recorder, Step, SummaryRow, Trace

# Steps with at most this many elements keep every element's terms, for the sums written
# out under their tables; past this many terms a step is too long to read anyway.
EXPAND_ELEMENTS = 64
EXPAND_TERMS = 4096

ROUNDING_PHASES = {"forward": ("forward",), "backward": ("backward",),
                   "all": ("forward", "loss", "backward", "update")}


def run(scenario: Scenario, *, overrides: dict | None = None, explain: dict | None = None,
        terms: bool = True) -> Trace:
    """Trace the scenario.

    overrides: name -> Patch, pinned like `given` (the checker passes a student's answers).
    explain:   name -> set of canonical indices whose terms to record whatever the step's size.
    terms:     False records no sums term by term except those `explain` asks for: the
               checker reads only values and runs the engine many times, and recording
               the terms is half the cost of a run.
    """
    try:
        # every step is checked for inf and nan as it is recorded, and the first one is
        # reported with its name and line; numpy's own overflow warning would only add a
        # line of bptrace's source to the terminal
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _Run(scenario, overrides or {}, explain or {}, terms).trace()
    except ScenarioError as error:
        # a loss found an output it cannot take, knowing only its key path: point at the line
        raise scenario.document.locate(error) if scenario.document else error


class _Run:
    def __init__(self, scenario: Scenario, overrides: dict, explain: dict, terms: bool = True):
        self.scenario = scenario
        self.pinned = merge_patches(list(scenario.given.values()) + list(overrides.values()))
        self.explain = explain
        self.terms = terms
        self.steps: list[Step] = []
        self.values: dict = {}

    # --- recording -------------------------------------------------------------------

    def recorder(self, name: str, roles: dict):
        shape = self.scenario.shapes[name]
        if name in self.explain:
            return Recorder(roles, want=set(self.explain[name]))
        if self.terms and int(np.prod(shape)) <= EXPAND_ELEMENTS:
            return Recorder(roles, limit=EXPAND_TERMS)
        return None

    def _rounds(self, name: str, phase: str) -> bool:
        rounding = self.scenario.rounding
        if rounding is None:
            return False
        return any(item == name or phase in ROUNDING_PHASES.get(item, ()) for item in rounding.apply)

    def emit(self, name, phase, layer, rule, computed, reads=(), rec=None, notes=(), origin=None):
        computed = np.asarray(computed, dtype=float).reshape(self.scenario.shapes[name])
        if not np.isfinite(computed).all():
            raise non_finite_error(self.scenario, name, computed)
        values, rounded, mask = computed, None, None
        if self._rounds(name, phase):
            rounding = self.scenario.rounding
            values, rounded = round_array(values, rounding.decimals, rounding.mode), rounding.describe()
        if name in self.pinned:
            patch: Patch = self.pinned[name]
            values, mask = np.where(patch.mask, patch.values, values), patch.mask
        step = Step(name=name, phase=phase, layer=layer, rule=rule, values=values, reads=tuple(reads),
                    computed=computed if (rounded or mask is not None) else None, given=mask,
                    rounded=rounded, expansions=rec.expansions if rec else None, notes=list(notes),
                    origin=origin)
        self.steps.append(step)
        self.values[name] = values
        return values

    # --- the passes ------------------------------------------------------------------

    def trace(self) -> Trace:
        sc = self.scenario
        self.emit("input", "input", None, f"the input, {sc.input_origin}", sc.input, origin=sc.input_origin)
        params = {}
        for layer in sc.layers:
            n = sc.names(layer)
            params[layer.name] = {}
            for role, initial in layer.params.items():
                origin = layer.origins[role]
                params[layer.name][role] = self.emit(n.param(role), "parameter", layer.name,
                                                     f"{n.param(role)}: {origin}", initial, origin=origin)
            rules = layer.rules(n)
            rec = self.recorder(n.out, layer.roles(n))
            out = layer.forward(self.values[n.x], params[layer.name], rec)
            self.emit(n.out, "forward", layer.name, rules["out"], out,
                      reads=(n.x,) + tuple(n.param(r) for r in layer.param_roles), rec=rec,
                      notes=layer.notes(self.values[n.x], n))

        loss_value = None
        if sc.upstream:
            start = sc.upstream.layer
            self.emit(f"{start}.delta", "backward", start,
                      f"{start}.delta = the given error at {start}'s output (upstream.delta)",
                      sc.upstream.delta)
            start_text = f"from {start}.delta, the given upstream error"
        else:
            last = sc.layers[-1]
            loss = sc.loss.function()
            out_name, delta_name = f"{last.name}.out", f"{last.name}.delta"
            out = self.values[out_name]
            rec = self.recorder("loss", loss.roles(out_name))
            loss_value = float(self.emit("loss", "loss", None, loss.value_rule.format(out=out_name),
                                         np.array(loss.value(out, sc.loss.target, rec)),
                                         reads=(out_name,), rec=rec))
            rec = self.recorder(delta_name, loss.roles(out_name))
            self.emit(delta_name, "backward", last.name,
                      loss.delta_rule.format(out=out_name, delta=delta_name),
                      loss.gradient(out, sc.loss.target, rec), reads=(out_name,), rec=rec)
            start_text = f"from the loss, {sc.loss.type}"

        for layer in reversed(sc.active_layers):
            n = sc.names(layer)
            rules, roles = layer.rules(n), layer.roles(n)
            recs = {role: self.recorder(n.grad(role), roles) for role in layer.param_roles}
            recs["in"] = self.recorder(n.x_delta, roles)
            result = layer.backward(self.values[n.x], self.values[n.out], self.values[n.delta],
                                    params[layer.name], recs)
            for role in layer.param_roles:
                self.emit(n.grad(role), "backward", layer.name, rules[role], result[role],
                          reads=tuple(roles[r] for r in layer.grad_reads[role]), rec=recs[role])
            self.emit(n.x_delta, "backward", layer.name, rules["in"], result["in"],
                      reads=tuple(roles[r] for r in layer.in_delta_reads), rec=recs["in"])

        if sc.learning_rate is not None:
            for layer in sc.active_layers:
                for role in layer.param_roles:
                    self.sgd_step(sc.names(layer), role, sc.learning_rate)

        return Trace(name=sc.name, description=sc.description, conventions=sc.conventions.as_dict(),
                     summary=summary(sc), steps=self.steps, loss=loss_value, start=start_text)

    def sgd_step(self, n: Names, role: str, rate: float):
        """new = old − η · grad, element by element (Zhang 2016 eqs. 65-70)."""
        old_name, grad_name, new_name = n.param(role), n.grad(role), n.new(role)
        old, grad = self.values[old_name], self.values[grad_name]
        rec = self.recorder(new_name, {"old": old_name, "grad": grad_name})
        new = np.zeros(old.shape)
        for idx in np.ndindex(*old.shape):
            new[idx] = old[idx] - rate * grad[idx]
            if rec:
                rec.term(idx, ("old", idx, old[idx]))
                rec.term(idx, (f"−{rate:g}", None, -rate), ("grad", idx, grad[idx]))
        self.emit(new_name, "update", n.layer, f"{new_name} = {old_name} − {rate:g} · {grad_name}", new,
                  reads=(old_name, grad_name), rec=rec)


def summary(scenario: Scenario) -> list:
    rows = [SummaryRow("input", "", tuple(scenario.input.shape), 0)]
    rows += [SummaryRow(layer.name, layer.type, layer.out_shape, layer.param_count) for layer in scenario.layers]
    return rows

