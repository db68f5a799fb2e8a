"""The engine: forward pass, loss, backward pass and SGD step, recorded as a `Trace`.

It walks the layers, calls each layer's own forward and backward loops, and records every
value under its BRIEF section 2 name.  After each step it applies, in this order, the
scenario's `rounding` and then any pinned values (`given`, or a checker's overrides), so
that later steps use exactly the numbers a student would have on paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ScenarioError
from .layers import Names
from .rounding import round_array
from .scenario import Patch, Scenario, merge_patches, non_finite_error
from .trace import Expansion, Recorder, Step, StepPart, SummaryRow, Trace

# Steps with at most this many elements keep every element's terms, for the sums written
# out under their tables; past this many terms a step is too long to read anyway.
EXPAND_ELEMENTS = 64
EXPAND_TERMS = 4096

@dataclass
class Part:
    """What one reader sent back to a value it read, before the parts are added."""
    layer: str
    rule: str
    values: np.ndarray
    reads: tuple
    rec: object


ROUNDING_PHASES = {"forward": ("forward",), "backward": ("backward",),
                   "all": ("forward", "loss", "backward", "update")}


def run(scenario: Scenario, *, overrides: dict | None = None, explain: dict | None = None,
        terms: bool = True, keep: dict | None = None, reuse: dict | None = None) -> Trace:
    """Trace the scenario.

    overrides: name -> Patch, pinned like `given` (the checker passes a student's answers).
    explain:   name -> set of canonical indices whose terms to record whatever the step's size.
    terms:     False records no sums term by term except those `explain` asks for: the
               checker reads only values and runs the engine many times, and recording
               the terms is half the cost of a run.
    keep:      a dict filled with each layer's forward and backward results, keyed
               ("forward" | "backward", layer name), for a later run to `reuse`.
    reuse:     such results to take instead of running those layers' loops: the mistake
               catalog re-runs only from the first step a mistake changes.
    """
    try:
        state = _Run(scenario, overrides or {}, explain or {}, terms)
        state.keep, state.reuse = keep, reuse or {}
        return state.trace()
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

    def emit(self, name, phase, layer, rule, computed, reads=(), rec=None, notes=(), origin=None,
             expansions=None, parts=None):
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
                    rounded=rounded, expansions=rec.expansions if rec else expansions, notes=list(notes),
                    origin=origin, parts=parts)
        self.steps.append(step)
        self.values[name] = values
        return values

    # --- the passes ------------------------------------------------------------------

    def trace(self) -> Trace:
        sc, plan = self.scenario, self.scenario.plan
        for name, values in sc.inputs.items():
            origin = sc.input_origins[name]
            self.emit(name, "input", None, f"the input{'' if name == 'input' else ' ' + name}, {origin}", values,
                      origin=origin)
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
            x = self._read(layer, n)
            out = self._loop(("forward", layer.name), lambda: layer.forward(x, params[layer.name], rec))
            self.emit(n.out, "forward", layer.name, rules["out"], out,
                      reads=tuple(dict.fromkeys(n.xs)) + tuple(n.param(r) for r in layer.param_roles), rec=rec,
                      notes=layer.notes(x, n))

        loss_value = None
        if sc.upstream:
            start = sc.upstream.layer
            self.emit(f"{start}.delta", "backward", start,
                      f"{start}.delta = the given error at {start}'s output (upstream.delta)",
                      sc.upstream.delta)
            start_text = f"from {start}.delta, the given upstream error"
        else:
            last = sc.output
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

        # Backward through the plan in reverse.  Each layer sends a part of the delta to each
        # value it read; a value's delta is the sum of its parts, emitted once its last
        # reader has run (micrograd's `+=`: a value read twice gets both contributions).
        parts: dict = {}
        for node in reversed(plan.active):
            layer = sc.layer(node.name)
            n = sc.names(layer)
            rules, roles = layer.rules(n), layer.roles(n)
            recs = {role: self.recorder(n.grad(role), roles) for role in layer.param_roles}
            if layer.merge:
                recs["in"] = [self.recorder(d, roles) for d in n.x_deltas]
            else:
                recs["in"] = self.recorder(n.x_delta, roles)
            result = self._loop(("backward", layer.name), lambda: layer.backward(
                self._read(layer, n), self.values[n.out], self.values[n.delta], params[layer.name], recs))
            for role in layer.param_roles:
                self.emit(n.grad(role), "backward", layer.name, rules[role], result[role],
                          reads=tuple(roles[r] for r in layer.grad_reads[role]), rec=recs[role])
            sent = result["in"] if layer.merge else [result["in"]]
            in_recs = recs["in"] if layer.merge else [recs["in"]]
            for k, (value, delta) in enumerate(zip(node.reads, sent)):
                rule = rules[f"in{k}"] if layer.merge else rules["in"]
                reads = layer.in_delta_names(roles, k)
                parts.setdefault(value.delta, []).append(Part(layer.name, rule, delta, reads, in_recs[k]))
            for value in plan.completes(node):
                self._emit_delta(value.delta, parts.pop(value.delta))

        if sc.learning_rate is not None:
            for layer in sc.active_layers:
                for role in layer.param_roles:
                    self.sgd_step(sc.names(layer), role, sc.learning_rate)

        return Trace(name=sc.name, description=sc.description, conventions=sc.conventions.as_dict(),
                     summary=summary(sc), steps=self.steps, loss=loss_value, start=start_text)

    def _loop(self, key, compute):
        """A layer's loop, or its result from an earlier run of the same numbers (`reuse`)."""
        result = self.reuse[key] if key in self.reuse else compute()
        if self.keep is not None:
            self.keep[key] = result
        return result

    def _read(self, layer, n: Names):
        """What a layer's loops take: the value it reads, or the list of them for a merge."""
        if layer.merge:
            return [self.values[x] for x in n.xs]
        return self.values[n.x]

    def _emit_delta(self, name: str, parts: list):
        """A value's delta from what its readers sent back: one reader's part as it is (a
        chain), or the sum of several, each kept so that `explain` can show it."""
        if len(parts) == 1:
            part = parts[0]
            self.emit(name, "backward", part.layer, part.rule, part.values, reads=part.reads, rec=part.rec)
            return
        total = parts[0].values
        for part in parts[1:]:
            total = total + part.values
        # the summed element's terms: every reader's terms, one after another
        expansions = None
        if all(part.rec for part in parts):
            expansions = {}
            for part in parts:
                for at, expansion in part.rec.expansions.items():
                    into = expansions.setdefault(at, Expansion("sum"))
                    into.terms.extend(expansion.terms)
        readers = [part.layer for part in parts]
        rule = f"{name} = " + " + ".join(f"(through {part.layer}: {part.rule.split(' = ', 1)[-1]})"
                                         for part in parts)
        reads = tuple(dict.fromkeys(r for part in parts for r in part.reads))
        self.emit(name, "backward", parts[-1].layer, rule, total, reads=reads, expansions=expansions,
                  notes=[f"{name} is the sum of what {', '.join(readers[:-1])} and {readers[-1]} send back: "
                         f"{name.rsplit('.delta', 1)[0]} is read by each of them"],
                  parts=[StepPart(part.layer, part.rule, part.values) for part in parts])

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
    rows = [SummaryRow(name, "", tuple(values.shape), 0) for name, values in scenario.inputs.items()]
    plan = scenario.plan
    previous = list(scenario.inputs)[:1]
    for layer in scenario.layers:
        reads = tuple(value.name for value in plan.node(layer.name).reads)
        # "reads" is shown only where the wiring is not the chain the list suggests
        rows.append(SummaryRow(layer.name, layer.type, layer.out_shape, layer.param_count,
                               reads if list(reads) != previous else ()))
        previous = [layer.name]
    return rows

