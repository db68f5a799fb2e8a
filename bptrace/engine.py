"""The engine: forward pass, loss, backward pass and SGD step, recorded as a `Trace`.

It walks the layers, calls each layer's own forward and backward loops, and records every
value under its BRIEF section 2 name.  After each step it applies, in this order, the
scenario's `rounding` and then any pinned values (`given`, or a checker's overrides), so
that later steps use exactly the numbers a student would have on paper.

Where something decides on float noise (a relu or max-pool input) or rounds, it also
carries each value's noise bound (layers.EPS): zero for numbers as written, rounded or
pinned, and from each layer's `forward_noise` / `backward_noise` for computed ones.  The
backward bounds are needed by rounding only; a scenario with neither costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ScenarioError
from .layers import Names, noise_bound
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
    noise: np.ndarray | None = None     # its float-noise bound, where the scenario needs one


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
        # name -> noise bound array.  Computed where something reads them: forward up to the
        # last deciding layer's input, and everywhere when the scenario rounds; zeros elsewhere.
        self.noise: dict = {}
        deciding = [k for k, layer in enumerate(scenario.layers) if layer.decides]
        self.rounding_bounds = scenario.rounding is not None
        self.forward_bounds = len(scenario.layers) if self.rounding_bounds else max(deciding, default=0)

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

    def emit(self, name, phase, layer, rule, computed, reads=(), rec=None, notes=(), origin=None, noise=None,
             expansions=None, parts=None):
        """Record a step.  noise: the bound on each computed element's float noise (None:
        the values are exact, as written)."""
        computed = np.asarray(computed, dtype=float).reshape(self.scenario.shapes[name])
        if not np.isfinite(computed).all():
            raise non_finite_error(self.scenario, name, computed)
        values, rounded, mask = computed, None, None
        noise = np.zeros(computed.shape) if noise is None else \
            np.nan_to_num(np.asarray(noise, dtype=float).reshape(computed.shape), nan=np.inf)
        kept = noise
        if self._rounds(name, phase):
            rounding = self.scenario.rounding
            values, rounded = round_array(values, rounding.decimals, rounding.mode, noise), rounding.describe()
            kept = np.zeros(computed.shape)     # a rounded number is exact, as written
        if name in self.pinned:
            patch: Patch = self.pinned[name]
            values, mask = np.where(patch.mask, patch.values, values), patch.mask
            kept = np.where(mask, 0.0, kept)
        step = Step(name=name, phase=phase, layer=layer, rule=rule, values=values, reads=tuple(reads),
                    computed=computed if (rounded or mask is not None) else None, given=mask,
                    rounded=rounded, expansions=rec.expansions if rec else expansions, notes=list(notes),
                    origin=origin, noise=noise if rounded else None, parts=parts)
        self.steps.append(step)
        self.values[name] = values
        self.noise[name] = kept
        return values

    def floor(self, layer, n: Names):
        """Set the noise bound of the input `layer` now reads, for the layers that decide on it
        (a merge that decides gets a list, one bound per value read)."""
        if layer.decides:
            floors = [None if self.noise.get(x) is None else np.where(np.isfinite(self.noise[x]), self.noise[x], 0.0)
                      .tolist() for x in (n.xs if layer.merge else (n.x,))]
            layer.floor = floors if layer.merge else floors[0]

    def bounds(self, names: dict) -> dict:
        """role -> the noise bound of the traced value it names."""
        return {role: self.noise[name] for role, name in names.items()}

    # --- the passes ------------------------------------------------------------------

    def trace(self) -> Trace:
        sc, plan = self.scenario, self.scenario.plan
        for name, values in sc.inputs.items():
            origin = sc.input_origins[name]
            self.emit(name, "input", None, f"the input{'' if name == 'input' else ' ' + name}, {origin}", values,
                      origin=origin)
        params = {}
        for position, layer in enumerate(sc.layers):
            n = sc.names(layer)
            params[layer.name] = {}
            for role, initial in layer.params.items():
                origin = layer.origins[role]
                params[layer.name][role] = self.emit(n.param(role), "parameter", layer.name,
                                                     f"{n.param(role)}: {origin}", initial, origin=origin)
            rules = layer.rules(n)
            rec = self.recorder(n.out, layer.roles(n))
            self.floor(layer, n)
            x = self._read(layer, n)
            if layer.extras:
                recs = {"out": rec, **{k: self.recorder(n.extra(k), layer.roles(n)) for k in layer.extras}}
                bounds = self.bounds({**self._inputs(layer, n), **{r: n.param(r) for r in layer.param_roles}}) \
                    if position < self.forward_bounds else None
                out = layer.forward(x, params[layer.name], recs, self._stage(layer, n, "forward", recs, bounds))
            else:
                out = layer.forward(x, params[layer.name], rec)
            noise = None
            if position < self.forward_bounds:
                noise = layer.forward_noise(x, params[layer.name], out,
                                            self.bounds({**self._inputs(layer, n),
                                                         **{r: n.param(r) for r in layer.param_roles}}))
            self.emit(n.out, "forward", layer.name, rules["out"], out,
                      reads=tuple(dict.fromkeys(n.xs)) + tuple(n.param(r) for r in layer.param_roles), rec=rec,
                      notes=layer.notes(x, n), noise=noise)

        loss_value = None
        if sc.upstream:
            start = sc.upstream.layer
            self.emit(f"{start}.delta", "backward", start,
                      sc.upstream.rule or f"{start}.delta = the given error at {start}'s output (upstream.delta)",
                      sc.upstream.delta)
            start_text = sc.upstream.start or f"from {start}.delta, the given upstream error"
        else:
            last = sc.output
            loss = sc.loss.function()
            out_name, delta_name = f"{last.name}.out", f"{last.name}.delta"
            out = self.values[out_name]
            rec = self.recorder("loss", loss.roles(out_name))
            bounds = self.rounding_bounds
            loss_value = float(self.emit("loss", "loss", None, loss.value_rule.format(out=out_name),
                                         np.array(loss.value(out, sc.loss.target, rec)), reads=(out_name,), rec=rec,
                                         noise=loss.value_noise(out, sc.loss.target, self.noise[out_name])
                                         if bounds else None))
            rec = self.recorder(delta_name, loss.roles(out_name))
            self.emit(delta_name, "backward", last.name,
                      loss.delta_rule.format(out=out_name, delta=delta_name),
                      loss.gradient(out, sc.loss.target, rec), reads=(out_name,), rec=rec,
                      noise=loss.gradient_noise(out, sc.loss.target, self.noise[out_name]) if bounds else None)
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
            self.floor(layer, n)
            read = (self._read(layer, n), self.values[n.out], self.values[n.delta], params[layer.name])
            if layer.backward_extras or layer.extras:
                recs.update({k: self.recorder(n.extra(k), roles) for k in layer.backward_extras})
                bounds = self.bounds({**self._inputs(layer, n), "out": n.out, "delta": n.delta,
                                      **{r: n.param(r) for r in layer.param_roles},
                                      **{k: n.extra(k) for k in layer.extras}}) if self.rounding_bounds else None
                result = layer.backward(*read, recs, self._stage(layer, n, "backward", recs, bounds))
            else:
                result = layer.backward(*read, recs)
            noise = {}
            if self.rounding_bounds:
                noise = layer.backward_noise(*read, self.bounds({**self._inputs(layer, n), "out": n.out,
                                                                 "delta": n.delta,
                                                                 **{r: n.param(r) for r in layer.param_roles}}))
            for role in layer.param_roles:
                self.emit(n.grad(role), "backward", layer.name, rules[role], result[role],
                          reads=tuple(roles[r] for r in layer.grad_reads[role]), rec=recs[role],
                          noise=noise.get(role))
            sent = result["in"] if layer.merge else [result["in"]]
            sent_noise = noise.get("in") if layer.merge else [noise.get("in")]
            in_recs = recs["in"] if layer.merge else [recs["in"]]
            for k, (value, delta) in enumerate(zip(node.reads, sent)):
                rule = rules[f"in{k}"] if layer.merge else rules["in"]
                reads = layer.in_delta_names(roles, k)
                parts.setdefault(value.delta, []).append(
                    Part(layer.name, rule, delta, reads, in_recs[k], sent_noise[k] if sent_noise else None))
            for value in plan.completes(node):
                self._emit_delta(value.delta, parts.pop(value.delta))

        if sc.learning_rate is not None:
            for layer in sc.active_layers:
                for role in layer.param_roles:
                    self.sgd_step(sc.names(layer), role, sc.learning_rate)

        return Trace(name=sc.name, description=sc.description, conventions=sc.conventions.as_dict(),
                     summary=summary(sc), steps=self.steps, loss=loss_value, start=start_text)

    def _stage(self, layer, n: Names, phase: str, recs: dict, bounds: dict | None = None):
        """The callback a layer with inner values traces them through, in its own loops.
        `stage.bounds` is None when nothing needs float-noise bounds here; otherwise role ->
        the bound of what the layer read, and of each value staged so far as it was kept
        (zero once rounded or given), for the layer to bound the next value it stages."""
        roles, rules = layer.roles(n), layer.rules(n)

        def stage(name: str, values, reads=(), noise=None):
            kept = self.emit(n.extra(name), phase, layer.name, rules[name], values,
                             reads=tuple(dict.fromkeys(roles[r] for r in reads)), rec=recs.get(name), noise=noise)
            if stage.bounds is not None:
                stage.bounds[name] = self.noise[n.extra(name)]
            return kept
        stage.bounds = bounds
        # backward reads the forward pass's inner values as they were kept
        stage.values = {k: self.values[n.extra(k)] for k in layer.extras if n.extra(k) in self.values}

        def settle(name: str, values):
            """The value's rounding and pins applied without tracing it: a layer that
            computes an inner value one part at a time (a recurrent layer, one time step
            after another) goes on with the numbers on paper before the whole is staged."""
            full, values = n.extra(name), np.asarray(values, dtype=float)
            if self._rounds(full, phase):
                values = round_array(values, self.scenario.rounding.decimals, self.scenario.rounding.mode)
            if full in self.pinned:
                values = np.where(self.pinned[full].mask, self.pinned[full].values, values)
            return values
        stage.settle = settle
        return stage

    @staticmethod
    def _inputs(layer, n: Names) -> dict:
        """role -> traced name of what the layer reads: "in", or "in0", "in1"... for a merge."""
        if layer.merge:
            return {f"in{k}": x for k, x in enumerate(n.xs)}
        return {"in": n.x}

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
            self.emit(name, "backward", part.layer, part.rule, part.values, reads=part.reads, rec=part.rec,
                      noise=part.noise)
            return
        total = parts[0].values
        for part in parts[1:]:
            total = total + part.values
        noise = None
        if all(part.noise is not None for part in parts):
            # each part's own noise, and one rounding per addition
            grown = sum(np.abs(part.values) + part.noise for part in parts)
            noise = noise_bound(grown, sum(np.abs(part.values) for part in parts), len(parts))
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
        self.emit(name, "backward", parts[-1].layer, rule, total, reads=reads, expansions=expansions, noise=noise,
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
        noise = None
        if self.rounding_bounds:
            grown = np.abs(old) + self.noise[old_name] + abs(rate) * (np.abs(grad) + self.noise[grad_name])
            noise = noise_bound(grown, np.abs(old) + abs(rate) * np.abs(grad), 2)
        self.emit(new_name, "update", n.layer, f"{new_name} = {old_name} − {rate:g} · {grad_name}", new,
                  reads=(old_name, grad_name), rec=rec, noise=noise)


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

