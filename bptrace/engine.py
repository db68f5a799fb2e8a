"""The engine: forward pass, loss, backward pass and update step, recorded as a `Trace`.

A scenario with `steps: N` trains N steps on the same data: `run` runs `_Run` once per
training step, each with its name prefix ("step2.") and the parameters and optimizer state
the step before left (`Carried`); with N = 1 there is one run and no prefix.

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

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .errors import ScenarioError
from .layers import EPS, Names, noise_bound
from .losses import LOSS_DATA, LOSS_L2, REGULARIZED
from .notation import Frac, Paren, Power, Ref, Sum, add, eq, listed, prod, seq, sym
from .notation import node as as_notation
from .numbers import MOST_DIGITS, NotExact, round_exact, too_long
from .optim import Update
from .rounding import round_array
from .scenario import Patch, Scenario, merge_patches, non_finite_error, step_error
from .trace import Expansion, Recorder, Step, StepPart, SummaryRow, Trace

# Steps with at most this many elements keep every element's terms, for the sums written
# out under their tables; past this many terms a step is too long to read anyway.
EXPAND_ELEMENTS = 64
EXPAND_TERMS = 4096

@dataclass
class Part:
    """What one reader sent back to a value it read, before the parts are added."""
    layer: str
    rule: object                        # its notation (bptrace.notation)
    values: np.ndarray
    reads: tuple
    rec: object
    noise: np.ndarray | None = None     # its float-noise bound, where the scenario needs one


ROUNDING_PHASES = {"forward": ("forward",), "backward": ("backward",),
                   "all": ("forward", "loss", "backward", "update")}


class _Undecided(Exception):
    """A relu-like layer met an input within its float noise of 0: floats cannot tell its side."""


def run(scenario: Scenario, *, overrides: dict | None = None, explain: dict | None = None,
        terms: bool = True, keep: dict | None = None, reuse: dict | None = None, bounds: bool = False) -> Trace:
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
    bounds:    True bounds every computed element's float noise and keeps it as `Step.noise`
               on every step (the checker's "exact"); it costs about 1.5 runs more, so a
               plain run bounds only what decides on noise or rounds.

    Where a relu (leaky_relu, elu) reads a value that is 0 within its float noise, floats
    cannot tell which side of 0 it is on paper (1e6 − 1e6 + 1e-9).  The scenario is then
    traced once in exact arithmetic, when it can be, and those elements take the side of
    their exact value; the floats are computed as always.
    """
    try:
        return _run(scenario, overrides, explain, terms, keep, reuse, bounds, None)
    except _Undecided:
        return _run(scenario, overrides, explain, terms, keep, reuse, bounds, _exact_values(scenario, overrides))


def _exact_values(scenario: Scenario, overrides) -> dict:
    """name -> exact values of every step, from the scenario traced in exact arithmetic; empty
    when it cannot be (an exp, a tanh): the float bounds then decide, as without this."""
    import copy

    from .numbers import EXACT
    from .scenario import use_numbers

    exact = copy.deepcopy(scenario)
    use_numbers(exact, EXACT)
    try:
        # the decisions read forward values only: the last training step stops at the input of
        # its last relu-like layer (a Zhang-sized network's backward in fractions took twice its
        # forward, and a sigmoid or an elu below 0 there has no exact value to stop it)
        trace = _run(exact, overrides, None, False, None, None, False, None, decide_only=True)
    except ScenarioError:
        return {}
    return {step.name: step.exact for step in trace.steps}


def _run(scenario, overrides, explain, terms, keep, reuse, bounds, decisions, decide_only=False) -> Trace:
    try:
        num = scenario.numbers
        pinned = merge_patches(list(scenario.given.values()) + list((overrides or {}).values()))
        if num.exact:
            # a checker's answers, like `given`, are numbers as written
            pinned = {name: Patch(patch.name, num.tensor(patch.values), patch.mask) for name, patch in pinned.items()}
        steps, carried, first = [], None, None
        # every step is checked for inf and nan as it is recorded, and the first one is
        # reported with its name and line; numpy's own overflow warning would only add a
        # line of bptrace's source to the terminal
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), _no_cycle_collection():
            for k in range(1, scenario.steps + 1):
                one = _Run(scenario, pinned, explain or {}, terms, k, carried, bounds)
                one.decisions = decisions
                one.decide_only = decide_only and k == scenario.steps
                if scenario.steps == 1:
                    # the catalog's reuse is of one training step's loops, keyed by layer
                    one.keep, one.reuse = keep, reuse or {}
                one.trace()
                steps += one.steps
                carried, first = one.carried, first or one
        update = scenario.update
        return Trace(name=scenario.name, description=scenario.description,
                     conventions=scenario.conventions.as_dict(), summary=summary(scenario), steps=steps,
                     loss=first.loss_value, start=first.start_text,
                     update=update.describe() if update else "", training_steps=scenario.steps,
                     arithmetic=num.name)
    except ScenarioError as error:
        # a loss found an output it cannot take, knowing only its key path: point at the line
        raise scenario.document.locate(error) if scenario.document else error


@contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while the loops run: they make hundreds of thousands
    of short-lived tuples and lists, and no cycles, and each collection would walk every
    list still held (a sixth of Zhang's run).  Reference counting frees everything as usual."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


@dataclass
class Carried:
    """What a training step leaves the next: each updated parameter's values and noise bound
    (layer -> role -> array), and the optimizer state ("c1.kernel" -> {key: values, "step": n})."""
    params: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


class _Run:
    """One training step: forward, loss, backward and (when the scenario has one) the
    update, every name prefixed with the step's prefix (none when it trains one step)."""

    keep = None        # run(keep=, reuse=): the catalog's shared layer loops (one training step only)
    reuse: dict = {}
    # name -> exact values, for the relu-like layers' inputs that are 0 within float noise;
    # None: not known yet (such an input stops the run, to be traced again with them)
    decisions: dict | None = None
    decide_only = False  # _exact_values: forward to the last relu-like layer's input is all it reads

    def __init__(self, scenario: Scenario, pinned: dict, explain: dict, terms: bool = True, k: int = 1,
                 carried: Carried | None = None, bounds: bool = False):
        self.scenario = scenario
        self.num = scenario.numbers
        self.pinned = pinned
        self.k, self.prefix, self.before = k, scenario.prefix(k), carried
        self.carried = Carried()
        self.loss_value, self.start_text = None, ""
        self.explain = explain
        self.terms = terms
        self.steps: list[Step] = []
        self.decided: dict = {}            # input name -> how many elements exact values decided
        self.values: dict = {}
        # name -> noise bound array.  Computed where something reads them: forward up to the
        # last deciding layer's input, and everywhere when the scenario rounds or the run keeps
        # every bound (bounds=True); zeros elsewhere.
        self.noise: dict = {}
        deciding = [k for k, layer in enumerate(scenario.layers) if layer.decides]
        # exact numbers carry no float noise: nothing to bound
        self.rounding_bounds = (scenario.rounding is not None or bounds) and not self.num.exact
        self.all_bounds = bounds and not self.num.exact
        self.forward_bounds = 0 if self.num.exact else \
            len(scenario.layers) if self.rounding_bounds else max(deciding, default=0)

    # --- recording -------------------------------------------------------------------

    def recorder(self, name: str, roles: dict, terms: int | None = None):
        """What records the step's terms, or None.  terms: how many the step has in all,
        where its layer knows (a batch statistic sums a whole map per element): a step past
        EXPAND_TERMS is not started, rather than given up on after 4,096 of them."""
        shape = self.scenario.shapes[name]
        if name in self.explain:
            return Recorder(roles, want=set(self.explain[name]))
        if self.terms and int(np.prod(shape)) <= EXPAND_ELEMENTS and (terms or 0) <= EXPAND_TERMS:
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
        shape = self.scenario.shapes[name]
        if self.num.exact:
            computed = self._exact(name, layer, computed, shape)
        else:
            computed = np.asarray(computed, dtype=float).reshape(shape)
            if not np.isfinite(computed).all():
                raise non_finite_error(self.scenario, name, computed)
        values, rounded, mask = computed, None, None
        noise = np.zeros(computed.shape) if noise is None else \
            np.nan_to_num(np.asarray(noise, dtype=float).reshape(computed.shape), nan=np.inf)
        kept = noise
        if self._rounds(name, phase):
            rounding = self.scenario.rounding
            values, rounded = self._round(values, noise), rounding.describe()
            kept = np.zeros(computed.shape)     # a rounded number is exact, as written
        if name in self.pinned:
            patch: Patch = self.pinned[name]
            values, mask = np.where(patch.mask, patch.values, values), patch.mask
            kept = np.where(mask, 0.0, kept)
        rule = as_notation(rule)
        exact, shown, before = None, values, computed
        if self.num.exact:
            # converted once, here: the trace shows and compares floats, the loops go on exactly
            exact, shown = values, self.num.floats(values)
            # past the largest float; nan is an unbound letter's (`arithmetic: symbolic`), or a
            # square root of a negative pinned variance
            if np.isinf(shown).any() or self.num.name == "exact" and np.isnan(shown).any():
                raise non_finite_error(self.scenario, name, shown)
            before = self.num.floats(computed) if computed is not None else None
        step = Step(name=name, phase=phase, layer=layer, rule=str(rule), notation=rule, values=shown,
                    reads=tuple(reads), computed=before if (rounded or mask is not None) else None, given=mask,
                    rounded=rounded, expansions=rec.expansions if rec else expansions, notes=list(notes),
                    origin=origin, noise=noise if rounded or self.all_bounds else None, parts=parts,
                    training_step=self.k if self.scenario.steps > 1 else None, exact=exact)
        self.steps.append(step)
        if self.num.exact:
            values = self.num.carried(name, values, self.scenario.conventions.index_base)
        self.values[name] = values
        if not self.num.exact:
            self.noise[name] = kept
        return values

    def _round(self, values, noise=None):
        """The scenario's rounding, by hand: on the exact value, or on the float's paper value."""
        rounding = self.scenario.rounding
        if self.num.exact:
            return self.num.array([round_exact(v, rounding.decimals, rounding.mode)
                                   for v in values.reshape(-1).tolist()]).reshape(values.shape)
        return round_array(values, rounding.decimals, rounding.mode, noise)

    def _exact(self, name: str, layer, computed, shape, pinned: bool = True):
        """A step's exact values, or its pinned ones where it has none: a NotExact (exp, log,
        tanh, a square root without an exact value) or anything that fell back to floats."""
        why = computed if isinstance(computed, NotExact) else None
        if why is None:
            computed = self.num.array(computed).reshape(shape)
            if all(map(self.num.own, computed.reshape(-1).tolist())):
                if any(map(too_long, computed.reshape(-1).tolist())):
                    raise step_error(self.scenario, name, f"{name} cannot be written exactly: its exact value has "
                                     f"more than {MOST_DIGITS:,} digits", "use `arithmetic: float`")
                return computed
        patch = self.pinned.get(name)
        if pinned and patch is not None and patch.mask.all():
            return patch.values.copy()
        sc = self.scenario
        what = f"{layer} ({sc.layer(layer).type})" if layer and any(x.name == layer for x in sc.layers) else "the loss"
        if ".new." in name:
            what = f"the {sc.update.type} update"
        if getattr(why, "message", None):
            # symbolic: a comparison on letters without values (relu's side, max-pool's winner)
            message = why.message
            if layer and any(x.name == layer and x.type in ("maxpool", "global_maxpool") for x in sc.layers):
                message = message.replace("decide its side", "decide each window's winner")
            raise step_error(sc, name, f"{name}: {what} {message}", why.hint)
        need = f"{why.function}, which has no exact value here ({why})" if why else "floating-point numbers"
        raise step_error(sc, name, f"{name} cannot be computed exactly: {what} needs {need}",
                         f"pin {name} with `given:` (its values as on paper), or use `arithmetic: float`"
                         if pinned else "use `arithmetic: float`")

    def _attempt(self, compute):
        """compute(), or in exact arithmetic the NotExact it met, for `emit` to pin or refuse."""
        if not self.num.exact:
            return compute()
        try:
            return compute()
        except NotExact as why:
            return why

    def floor(self, layer, n: Names):
        """Set the noise bound of the input `layer` now reads, for the layers that decide on it
        (a merge that decides gets a list, one bound per value read)."""
        if layer.decides:
            floors = [None if self.noise.get(x) is None else np.where(np.isfinite(self.noise[x]), self.noise[x], 0.0)
                      for x in (n.xs if layer.merge else (n.x,))]
            if layer.elementwise and floors[0] is not None:
                floors[0] = self._sides(n.x, floors[0])
            elif hasattr(layer, "noisy_tie"):
                self._ties(layer, n.x, floors[0])
            floors = [None if f is None else f.tolist() for f in floors]
            layer.floor = floors if layer.merge else floors[0]

    def _sides(self, name: str, noise):
        """A relu-like layer's floors, where the exact values decide: an element within its
        noise of 0 gets floor −inf (its exact value is above 0: it passes) or +inf (0 or
        below: the flat side), as the layer compares `z > floor`."""
        x = self.values[name]
        undecided = (noise > 0) & (np.abs(x) <= noise)
        if not undecided.any():
            return noise
        if self.decisions is None:
            raise _Undecided(name)
        exact = self.decisions.get(name)
        if exact is None:
            return noise
        self.decided[name] = int(undecided.sum())
        above = np.array([v > 0 for v in exact.reshape(-1).tolist()]).reshape(x.shape)
        return np.where(undecided, np.where(above, -np.inf, np.inf), noise)

    def _ties(self, layer, name: str, noise):
        """A max-pool whose window is a tie only within float noise takes each window's
        maximum from the exact values, as relu takes its side (a true tie: the first)."""
        layer.exact = None
        if noise is None or not layer.noisy_tie(self.values[name], noise.tolist()):
            return
        if self.decisions is None:
            raise _Undecided(name)
        exact = self.decisions.get(name)
        if exact is not None:
            layer.exact = exact.tolist()
            self.decided[name] = 0

    def bounds(self, names: dict) -> dict:
        """role -> the noise bound of the traced value it names."""
        return {role: self.noise[name] for role, name in names.items()}

    # --- the passes ------------------------------------------------------------------

    def names(self, layer) -> Names:
        return self.scenario.names(layer, self.prefix)

    def trace(self):
        sc, plan, p = self.scenario, self.scenario.plan, self.prefix
        for name, values in sc.inputs.items():
            origin = sc.input_origins[name]
            self.emit(p + name, "input", None, f"the input{'' if name == 'input' else ' ' + name}, {origin}", values,
                      origin=origin)
        params = {}
        last = max((k for k, layer in enumerate(sc.layers)
                    if layer.elementwise and layer.decides or hasattr(layer, "noisy_tie")), default=-1)
        for position, layer in enumerate(sc.layers):
            if self.decide_only and position >= last:
                return          # its input is all the decisions read (an elu below 0 has no exact value)
            n = self.names(layer)
            params[layer.name] = {}
            for role, initial in layer.params.items():
                origin, noise = layer.origins[role], None
                if self.before and role in self.before.params.get(layer.name, {}):
                    # training step k ≥ 2 starts from what step k − 1's update made
                    origin = f"{sc.names(layer, sc.prefix(self.k - 1)).new(role)}, made by training step {self.k - 1}"
                    initial, noise = self.before.params[layer.name][role], self.before.noise[layer.name][role]
                params[layer.name][role] = self.emit(n.param(role), "parameter", layer.name,
                                                     seq(Ref(n.param(role)), f": {origin}"), initial, origin=origin,
                                                     noise=noise)
            rules = layer.rules(n)
            rec = self.recorder(n.out, layer.roles(n))
            self.floor(layer, n)
            x = self._read(layer, n)
            if layer.extras:
                recs = {"out": rec, **{k: self.recorder(n.extra(k), layer.roles(n), layer.term_count(k))
                                       for k in layer.extras}}
                bounds = self.bounds({**self._inputs(layer, n), **{r: n.param(r) for r in layer.param_roles}}) \
                    if not self.num.exact and (position < self.forward_bounds or layer.decides) else None
                out = self._attempt(lambda: layer.forward(x, params[layer.name], recs,
                                                          self._stage(layer, n, "forward", recs, bounds)))
            else:
                out = self._attempt(lambda: self._loop(("forward", layer.name),
                                                       lambda: layer.forward(x, params[layer.name], rec)))
            noise = None
            if position < self.forward_bounds:
                noise = self._loop(("forward", layer.name, "noise"), lambda: layer.forward_noise(
                    x, params[layer.name], out, self.bounds({**self._inputs(layer, n),
                                                             **{r: n.param(r) for r in layer.param_roles}})))
            # a forward pass refused (NotExact) has no winners or sides to note: emit refuses it
            notes = [] if isinstance(out, NotExact) else layer.notes(x, n)
            if n.x in self.decided and hasattr(layer, "noisy_tie"):
                notes.append(f"values of {n.x} equal within float noise: {layer.type} took each window's maximum "
                             "from the exact values (the scenario traced in fractions)")
            elif n.x in self.decided and layer.elementwise and layer.decides:
                count = self.decided[n.x]
                notes.append(f"{count} element{'s' if count > 1 else ''} of {n.x} {'are' if count > 1 else 'is'} 0 "
                             f"within float noise: {layer.type} decided on {'their' if count > 1 else 'its'} "
                             f"exact value{'s' if count > 1 else ''} (the scenario traced in fractions)")
            self.emit(n.out, "forward", layer.name, rules["out"], out,
                      reads=tuple(dict.fromkeys(n.xs)) + tuple(n.param(r) for r in layer.param_roles), rec=rec,
                      notes=notes, noise=noise)
        if self.decide_only:
            return

        if sc.upstream:
            start = sc.upstream.layer
            self.emit(f"{p}{start}.delta", "backward", start,
                      sc.upstream.rule or eq(Ref(f"{p}{start}.delta"),
                                             f"the given error at {start}'s output (upstream.delta)"),
                      sc.upstream.delta)
            self.start_text = sc.upstream.start or f"from {start}.delta, the given upstream error"
        else:
            last = sc.output
            loss = sc.loss.function()
            loss.num, loss.output_type = self.num, last.type
            out_name, delta_name = f"{p}{last.name}.out", f"{p}{last.name}.delta"
            out = self.values[out_name]
            # with regularization the loss of the output is `loss.data`, and `loss` its sum with `loss.l2`
            data_name = p + (LOSS_DATA if sc.regularization is not None else "loss")
            rec = self.recorder(data_name, loss.roles(out_name))
            bounds = self.rounding_bounds
            rule = loss.value_rule(Ref(data_name), Ref(out_name))
            self.loss_value = float(self.emit(data_name, "loss", None, rule,
                                              self._attempt(lambda: np.array(loss.value(out, sc.loss.target, rec))),
                                              reads=(out_name,),
                                              rec=rec, noise=loss.value_noise(out, sc.loss.target, self.noise[out_name])
                                              if bounds else None))
            if sc.regularization is not None:
                self.loss_value = float(self._l2_loss(params, data_name))
            rec = self.recorder(delta_name, loss.roles(out_name))
            self.emit(delta_name, "backward", last.name,
                      loss.delta_rule(Ref(delta_name), Ref(out_name)),
                      self._attempt(lambda: loss.gradient(out, sc.loss.target, rec)), reads=(out_name,), rec=rec,
                      noise=loss.gradient_noise(out, sc.loss.target, self.noise[out_name]) if bounds else None)
            self.start_text = f"from the loss, {sc.loss.type}"

        # Backward through the plan in reverse.  Each layer sends a part of the delta to each
        # value it read; a value's delta is the sum of its parts, emitted once its last
        # reader has run (micrograd's `+=`: a value read twice gets both contributions).
        parts: dict = {}
        for node in reversed(plan.active):
            layer = sc.layer(node.name)
            n = self.names(layer)
            rules, roles = layer.rules(n), layer.roles(n)
            recs = {role: self.recorder(n.grad(role), roles, layer.term_count(f"grad.{role}"))
                    for role in layer.param_roles}
            if layer.merge:
                recs["in"] = [self.recorder(d, roles) for d in n.x_deltas]
            else:
                recs["in"] = self.recorder(n.x_delta, roles)
            self.floor(layer, n)
            read = (self._read(layer, n), self.values[n.out], self.values[n.delta], params[layer.name])
            if layer.backward_extras or layer.extras:
                recs.update({k: self.recorder(n.extra(k), roles, layer.term_count(k)) for k in layer.backward_extras})
                bounds = self.bounds({**self._inputs(layer, n), "out": n.out, "delta": n.delta,
                                      **{r: n.param(r) for r in layer.param_roles},
                                      **{k: n.extra(k) for k in layer.extras}}) if self.rounding_bounds else None
                result = self._attempt(lambda: layer.backward(*read, recs, self._stage(layer, n, "backward", recs, bounds)))
            else:
                result = self._attempt(lambda: self._loop(("backward", layer.name), lambda: layer.backward(*read, recs)))
            if isinstance(result, NotExact):
                # nothing this layer sends back has an exact value: each step is pinned or refused
                result = {**{role: result for role in layer.param_roles},
                          "in": [result] * len(node.reads) if layer.merge else result}
            noise = {}
            if self.rounding_bounds:
                noise = dict(self._loop(("backward", layer.name, "noise"), lambda: layer.backward_noise(
                    *read, self.bounds({**self._inputs(layer, n), "out": n.out, "delta": n.delta,
                                        **{r: n.param(r) for r in layer.param_roles}}))))
            for role in layer.param_roles:
                rule, reads = rules[role], tuple(roles[r] for r in layer.grad_reads[role])
                if sc.regularization is not None and role in REGULARIZED:
                    result[role], noise[role], rule = self._l2_gradient(n, role, result[role], recs[role],
                                                                        noise.get(role), rule)
                    reads += (n.param(role),)
                self.emit(n.grad(role), "backward", layer.name, rule, result[role], reads=reads, rec=recs[role],
                          noise=noise.get(role))
            sent = result["in"] if layer.merge else [result["in"]]
            sent_noise = noise.get("in") if layer.merge else [noise.get("in")]
            in_recs = recs["in"] if layer.merge else [recs["in"]]
            for k, (value, delta) in enumerate(zip(node.reads, sent)):
                rule = rules[f"in{k}"] if layer.merge else rules["in"]
                reads = layer.in_delta_names(roles, k)
                parts.setdefault(p + value.delta, []).append(
                    Part(layer.name, rule, delta, reads, in_recs[k], sent_noise[k] if sent_noise else None))
            for value in plan.completes(node):
                self._emit_delta(p + value.delta, parts.pop(p + value.delta))

        update = sc.update
        if update is not None:
            if self.num.exact:
                update = update.use(self.num)
            for layer in sc.active_layers:
                for role in layer.param_roles:
                    self.update_step(self.names(layer), role, update)

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
            full = n.extra(name)
            values = self.num.array(values) if self.num.exact else np.asarray(values, dtype=float)
            if self._rounds(full, phase):
                values = self._round(values)
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
            self.emit(name, "backward", part.layer, part.rule, part.values, reads=part.reads, rec=part.rec,
                      noise=part.noise)
            return
        total = parts[0].values
        for part in parts[1:]:
            total = part.values if isinstance(part.values, NotExact) else \
                total if isinstance(total, NotExact) else total + part.values
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
        rule = eq(Ref(name), add(*(Paren(seq(f"through {part.layer}: ", part.rule.rhs)) for part in parts)))
        reads = tuple(dict.fromkeys(r for part in parts for r in part.reads))
        self.emit(name, "backward", parts[-1].layer, rule, total, reads=reads, expansions=expansions, noise=noise,
                  notes=[f"{name} is the sum of what {', '.join(readers[:-1])} and {readers[-1]} send back: "
                         f"{name.rsplit('.delta', 1)[0]} is read by each of them"],
                  parts=[StepPart(part.layer, str(part.rule), part.values) for part in parts])

    # --- L2 regularization (README "Training: losses, optimizers, several steps") -------

    def _l2_loss(self, params: dict, data_name: str) -> float:
        """`loss.l2` = (λ/2)·Σ w² over every kernel and weight matrix the backward pass
        reaches, then `loss` = `loss.data` + `loss.l2`."""
        sc, p = self.scenario, self.prefix
        lam, exact_lam = sc.regularization, self.num.of(sc.regularization)
        weights = [(self.names(layer).param(role), params[layer.name][role]) for layer in sc.active_layers
                   for role in layer.param_roles if role in REGULARIZED]
        rec = self.recorder(p + LOSS_L2, {})
        total = 0
        for name, w in weights:
            for idx in np.ndindex(*w.shape):
                total += exact_lam / 2 * w[idx] * w[idx]
                if rec:
                    rec.term((), (f"{lam:g}/2", None, exact_lam / 2), (name, idx, w[idx]), (name, idx, w[idx]))
        noise = None
        if self.rounding_bounds:
            grown = sum(float(((np.abs(w) + self.noise[name]) ** 2).sum()) for name, w in weights) * lam / 2
            plain = sum(float((w ** 2).sum()) for _, w in weights) * lam / 2
            noise = noise_bound(grown, plain, sum(w.size for _, w in weights) + 2)
        l2 = self.emit(p + LOSS_L2, "loss", None,
                       eq(Ref(p + LOSS_L2), prod(Paren(Frac(sym(f"{lam:g}"), sym(2))),
                                                 Sum((), seq(Power(sym("w"), "2"), " over ",
                                                             *listed(Ref(name) for name, _ in weights))))),
                       np.array(total), reads=tuple(name for name, _ in weights), rec=rec, noise=noise)[()]
        data = self.values[data_name][()]
        rec = self.recorder(p + "loss", {})
        if rec:
            rec.term((), (data_name, (), data))
            rec.term((), (p + LOSS_L2, (), l2))
        noise = None
        if self.rounding_bounds:
            noise = noise_bound(abs(data) + abs(l2) + float(self.noise[data_name]) + float(self.noise[p + LOSS_L2]),
                                abs(data) + abs(l2), 2)
        return self.emit(p + "loss", "loss", None, eq(Ref(p + "loss"), add(Ref(data_name), Ref(p + LOSS_L2))),
                         np.array(data + l2),
                         reads=(data_name, p + LOSS_L2), rec=rec, noise=noise)

    def _l2_gradient(self, n: Names, role: str, grad, rec, noise, rule: str):
        """The data gradient plus λ·w, each element's terms ending with the λ·w term."""
        lam, w = self.scenario.regularization, self.values[n.param(role)]
        exact_lam = self.num.of(lam)
        rule = eq(rule.lhs, add(rule.rhs, prod(sym(f"{lam:g}"), Ref(n.param(role)))))
        if isinstance(grad, NotExact):
            return grad, noise, rule
        out = self.num.array(grad).copy()
        for idx in np.ndindex(*w.shape):
            out[idx] = grad[idx] + exact_lam * w[idx]
            if rec:
                rec.term(idx, (f"{lam:g}", None, exact_lam), (n.param(role), idx, w[idx]))
        if noise is not None:
            noise = noise + lam * self.noise[n.param(role)] + 2 * EPS * (np.abs(out) + lam * np.abs(w))
        return out, noise, rule

    # --- the update ---------------------------------------------------------------------

    def update_step(self, n: Names, role: str, optimizer):
        """One parameter's update by `optimizer` (optim.py): its new state, then its new
        values, each traced; what it makes is carried to the next training step."""
        sc = self.scenario
        key = f"{n.layer}.{role}"
        old_name, grad_name = n.param(role), n.grad(role)
        if self.before is not None:
            previous = self.before.state.get(key, {})
            earlier = sc.names(sc.layer(n.layer), sc.prefix(self.k - 1))
            before = {skey: earlier.state(role, skey) for skey in optimizer.state_keys() if skey in previous}
        else:
            previous = optimizer.state.get(key, {})
            before = {skey: f"{skey} (given)" for skey in optimizer.state_keys() if skey in previous}
        names = {"old": old_name, "grad": grad_name, "new": n.new(role), "before": before,
                 "state": lambda skey: n.state(role, skey)}

        def stage(skey, rule, compute, roles):
            name = n.new(role) if skey == "new" else n.state(role, skey)
            roles = {"old": old_name, "grad": grad_name, **{r: v for r, v in roles.items() if v}}
            rec = self.recorder(name, roles)
            values = self._attempt(lambda: compute(rec))
            if not self.num.exact:
                values = np.asarray(values, dtype=float).reshape(sc.shapes[name])
            reads = tuple(dict.fromkeys(v for v in roles.values() if v in sc.shapes))
            return self.emit(name, "update", n.layer, rule, values, reads=reads, rec=rec,
                             noise=self._update_noise(optimizer, old_name, grad_name, values)
                             if self.rounding_bounds else None)

        try:
            state = optimizer.update(Update(self.values[old_name], self.values[grad_name], names, previous,
                                            previous.get("step", 0), stage))
        except NotExact as why:
            # a constant of the whole update (Adam's √(1 − β₂ᵗ)) has no exact value
            self._exact(n.new(role), n.layer, why, sc.shapes[n.new(role)], pinned=False)
        self.carried.params.setdefault(n.layer, {})[role] = self.values[n.new(role)]
        self.carried.noise.setdefault(n.layer, {})[role] = self.noise.get(n.new(role))
        self.carried.state[key] = state

    def _update_noise(self, optimizer, old_name: str, grad_name: str, values):
        """The noise bound of an update's values.  Plain SGD: old − η·grad, exactly as the
        two-term sum it is.  The others: the noise of the parameter and gradient they read,
        carried at full weight, and 64 roundings of the magnitudes; an estimate, not a
        proof, for their square roots and quotients."""
        old, grad = self.values[old_name], self.values[grad_name]
        e_old, e_grad = self.noise[old_name], self.noise[grad_name]
        rate = abs(optimizer.lr)
        if optimizer.type == "sgd" and not optimizer.options["momentum"] and not optimizer.options["weight_decay"]:
            grown = np.abs(old) + e_old + rate * (np.abs(grad) + e_grad)
            return noise_bound(grown, np.abs(old) + rate * np.abs(grad), 2)
        relative = np.minimum(1.0, e_grad / np.maximum(np.abs(grad), np.finfo(float).tiny))
        return e_old + relative * (np.abs(values) + np.abs(old)) + 64 * EPS * (np.abs(values) + np.abs(old))


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

