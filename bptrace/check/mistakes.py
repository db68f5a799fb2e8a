"""The catalog of classic backpropagation mistakes, and which of them reproduce a sheet.

Each mistake is the scenario itself with one thing changed: a layer swapped for a copy
whose class is a small subclass overriding one method (a conv whose kernel gradient comes
out turned by 180°, a sigmoid whose slope is missing, a max-pool that routes its error to
the wrong cell...), a loss whose gradient is scaled, or a negated learning rate.  The
engine then runs it as it runs anything; neither the engine nor the layers know about
mistakes.

A mistake *explains* a wrong step when every wrong number of that step matches the
mistaken run, at the tolerance in force, either as the mistaken run computes it from the
start or as it computes it from the sheet's own earlier answers (a student who made the
mistake also carried their own rounded numbers).  It is reported only if, in addition, no
number the sheet got right disagrees with it.  Nothing else is ever offered as a guess.

Each variant declares the steps whose rule it changes (`Variant.changes`; a test holds
the declarations against runs where every step reads the clean numbers).  That makes the
search cheap.  A mistake whose changed steps feed no wrong answer is not run at all; the
mistaken run without answers is made once per scenario and shared by a class's sheets;
and the mistaken run *with* a sheet's answers is made only when its numbers are needed
and not known otherwise: a step the mistake cannot reach through steps the sheet left
unpinned is the sheet's own run, and a step none of whose inputs the sheet pinned is the
mistaken run without answers.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from ..engine import run
from ..errors import ScenarioError
from ..layers import Activation, AvgPool, BatchNorm, Conv, ConvTranspose, Dense, Dropout, Flatten, Identity, MaxPool
from ..layers import Recurrent, Softmax
from ..layers.normalization import _inverse_root
from ..losses import LOSSES
from ..notation import Ref
from ..notation import names as rule_names
from ..optim import Optimizer
from ..scenario import Loss, Scenario
from ..tensors import kept_axes
from .matching import RIGHT, WRONG, references
from .report import Diagnosis

# A mistake is named only when the numbers it reproduces carry this many significant digits
# between them: one number written "0.1" matches some mistake or other by chance.
EVIDENCE_DIGITS = 3

# In the order reports list them.
IDS = (
    "kernel-not-flipped", "input-delta-kernel-not-rotated", "input-delta-valid-not-full",
    "activation-derivative-missing", "activation-derivative-wrong-argument", "avgpool-scale-missing",
    "maxpool-routed-everywhere", "maxpool-wrong-position", "flatten-order-swapped", "loss-gradient-sign",
    "loss-factor-two", "batch-averaged-not-summed", "batch-summed-not-averaged", "bias-gradient-not-summed",
    "update-sign", "adam-no-bias-correction", "momentum-sign", "momentum-order", "conv-transpose-as-conv",
    "recurrent-next-step-path-missing", "branch-missing-where-used-twice",
    "batchnorm-statistics-constant", "dropout-mask-missing", "dropout-scale-missing",
    "sign-flipped", "transposed", "index-base", "learning-rate-in-gradient", "update-is-gradient",
    "rounding-only",
)
# Slips: the right number written wrongly, recognised from the answer and bptrace's numbers
# alone (no mistaken run): each maps a wrong number to the values it would be under the slip.
SLIPS = ("sign-flipped", "transposed", "index-base", "learning-rate-in-gradient", "update-is-gradient")


@dataclass
class Variant:
    """One way of making one catalog mistake in one scenario."""
    id: str
    message: str                  # one sentence a student can act on
    scenario: Scenario            # the scenario with the mistake built in
    layers: tuple = ()
    changes: frozenset = frozenset()   # the steps whose rule the mistake changes
    form: str = ""                # which way of making it (the swapped-in class or attribute)
    # For an answer of another shape than the step's: (name, written shape) → (the step whose
    # numbers it would be, a function from that step's canonical values to the written shape)
    shaped: Callable | None = None
    parts: tuple = ()             # a mistake made in several layers at once: each layer's own changes


# --- the mistaken layers --------------------------------------------------------------------

def _turned(values: np.ndarray) -> np.ndarray:
    """A kernel or a feature map turned by 180° in its last two axes."""
    return np.ascontiguousarray(values[..., ::-1, ::-1])


def _silent(recs: dict) -> dict:
    return {role: None for role in recs}


class KernelGradientTurned:
    """kernel-not-flipped: the right kernel gradient, turned by 180°."""

    mistaken_steps = ("grad.kernel",)

    def backward(self, x, out, delta, p, recs):
        result = super().backward(x, out, delta, p, recs)
        result["kernel"] = _turned(result["kernel"])
        return result


class DeltaTurnedInKernelGradient:
    """kernel-not-flipped: the delta turned by 180° before sliding it over the input (a
    convolution where the forward pass correlates, or the reverse)."""

    mistaken_steps = ("grad.kernel",)

    def backward(self, x, out, delta, p, recs):
        result = super().backward(x, out, delta, p, recs)
        result["kernel"] = super().backward(x, out, _turned(delta), p, _silent(recs))["kernel"]
        return result


class InputDeltaKernelUnturned:
    """input-delta-kernel-not-rotated: the error sent to the input through the kernel in
    the forward pass's orientation."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        result = super().backward(x, out, delta, p, recs)
        turned = dict(p, kernel=_turned(p["kernel"]))
        result["in"] = super().backward(x, out, delta, turned, _silent(recs))["in"]
        return result


class TransposedInputDeltaTurned(InputDeltaKernelUnturned):
    """conv-transpose-as-conv: a transposed conv's input delta taken as a conv's is, through
    the kernel turned by 180° (where it is a plain correlation with the kernel as it is).
    The same change as a conv's unturned kernel: the input delta through the kernel turned."""


def _per_map(layer) -> int:
    """How many numbers each output map of a conv holds over the batch: the terms of its
    bias gradient."""
    return int(np.prod(layer.out_shape)) // layer.out_shape[1]


def covered_cells(layer) -> np.ndarray:
    """[H][W] mask of the input cells that every kernel tap reads (a 'valid' convolution of
    the delta with the turned kernel yields exactly these)."""
    _, _, H, W = layer.in_shape
    _, _, kh, kw = layer.params["kernel"].shape
    # a window is rows[i] × columns[j] (`taps()`), so the taps that read cell (h, w) over all
    # windows are (the kernel rows that read row h) × (the columns that read column w)
    rows, columns = layer.taps()
    by_h, by_w = [set() for _ in range(H)], [set() for _ in range(W)]
    for pairs, by in ((rows, by_h), (columns, by_w)):
        for line in pairs:
            for tap, at in line:
                by[at].add(tap)
    return np.array([[len(by_h[h]) == kh and len(by_w[w]) == kw for w in range(W)] for h in range(H)])


class InputDeltaValid:
    """input-delta-valid-not-full: only the cells a 'valid' convolution reaches get an error."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        result = super().backward(x, out, delta, p, recs)
        result["in"] = result["in"] * covered_cells(self)
        return result


class BiasGradientAveraged:
    """bias-gradient-not-summed: the bias gradient averaged over positions and samples."""

    mistaken_steps = ("grad.bias",)

    def backward(self, x, out, delta, p, recs):
        result = super().backward(x, out, delta, p, recs)
        result["bias"] = result["bias"] / _per_map(self)
        return result


class ParameterGradientsScaled:
    """batch-averaged-not-summed: every parameter gradient times `gradient_factor` (1/N)."""
    gradient_factor = 1.0
    mistaken_steps = ("grads",)

    def backward(self, x, out, delta, p, recs, *stage):
        # *stage: a layer with inner values (batch norm's γ and β) takes the stage callback too
        result = super().backward(x, out, delta, p, recs, *stage)
        for role in self.param_roles:
            result[role] = result[role] * self.gradient_factor
        return result


class SlopeMissing:
    """activation-derivative-missing: the error passes the activation unchanged."""

    mistaken_steps = ("in",)

    def slope(self, z, y):
        return []


class SoftmaxSlopeMissing:
    """activation-derivative-missing, for a softmax: the error passes it unchanged."""
    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        return {"in": np.array(delta, dtype=float)}


class SlopeAtInput:
    """activation-derivative-wrong-argument: f′ written in terms of the output, fed the input
    (z(1 − z) for the sigmoid, 1 − z² for tanh)."""

    mistaken_steps = ("in",)

    def slope(self, z, y):
        return super().slope(z, z)


class SlopeOfOutput:
    """activation-derivative-wrong-argument: f′ of the output, σ(y)(1 − σ(y)) with y = σ(z)."""

    mistaken_steps = ("in",)

    def slope(self, z, y):
        return super().slope(y, self.f(y))


def _routed(layer, x, delta, choose) -> dict:
    """Max-pool backward where `choose(cells, values, best, origin)` picks the cells of each
    window that receive its error."""
    x, delta = x.tolist(), delta.reshape(layer.grid).tolist()
    x_delta = np.zeros(layer.in_shape)
    for n, c, i, j in np.ndindex(*layer.grid):
        cells, values, best, _ = layer.winner(x, n, c, i, j)
        for h, w in choose(cells, values, best, layer.origin(i, j)):
            x_delta[n, c, h, w] += delta[n][c][i][j]
    return {"in": x_delta}


class RoutedEverywhere:
    """maxpool-routed-everywhere: each window's error copied to every cell of the window."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        return _routed(self, x, delta, lambda cells, values, best, origin: cells)


class RoutedToCorner:
    """maxpool-wrong-position: each window's error at its top-left cell."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        return _routed(self, x, delta, lambda cells, values, best, origin: cells[:1])


class RoutedToMinimum:
    """maxpool-wrong-position: each window's error at its (first) smallest cell."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        return _routed(self, x, delta, lambda cells, values, best, origin: [cells[values.index(min(values))]])


class RoutedTransposed:
    """maxpool-wrong-position: row and column of the winner swapped within its window."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        def choose(cells, values, best, origin):
            (h, w), (oh, ow) = cells[best], origin
            mirrored = (oh + (w - ow), ow + (h - oh))
            return [mirrored] if mirrored in cells else []
        return _routed(self, x, delta, choose)


class AverageNotDivided:
    """avgpool-scale-missing: every cell of a window gets the window's whole error."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        result = super().backward(x, out, delta, p, recs)
        # each window's error times what it divides by, then shared out: the whole error
        result["in"] = super().backward(x, out, delta * self.divisors(), p, _silent(recs))["in"]
        return result


class UnflattenedOtherWay:
    """flatten-order-swapped (backward only): the error laid back in the other order."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs):
        other = copy.copy(self)
        other.column = not self.column
        return super(UnflattenedOtherWay, other).backward(x, out, delta, p, recs)


@lru_cache(maxsize=None)
def _mistaken_class(base: type, mistake: type) -> type:
    return type(f"{mistake.__name__}{base.__name__}", (mistake, base), {})


def _swapped(layer, mistake: type | None = None, **attributes):
    """A copy of `layer` whose class is `mistake` mixed into its own; attributes set on it."""
    clone = copy.copy(layer)
    if mistake is not None:
        clone.__class__ = _mistaken_class(type(layer), mistake)
    for key, value in attributes.items():
        setattr(clone, key, value)
    return clone


def _with_layers(scenario: Scenario, replaced: dict) -> Scenario:
    return dataclasses.replace(scenario, layers=[replaced.get(layer.name, layer) for layer in scenario.layers])


# --- the mistaken losses --------------------------------------------------------------------

@dataclass
class MistakenLoss(Loss):
    """The scenario's loss with its value and gradient scaled (a sign, a factor 2, a 1/N)."""
    value_factor: float = 1.0
    gradient_factor: float = 1.0

    def function(self):
        return _scaled_loss(LOSSES[self.type], self.value_factor, self.gradient_factor)()


@lru_cache(maxsize=None)
def _scaled_loss(base: type, value_factor: float, gradient_factor: float) -> type:
    def value(self, out, target, rec):
        return value_factor * base.value(self, out, target, None)

    def gradient(self, out, target, rec):
        return gradient_factor * base.gradient(self, out, target, None)

    return type(f"Mistaken{base.__name__}", (base,), {"value": value, "gradient": gradient})


def _loss_variant(scenario: Scenario, id_: str, message: str, value_factor: float,
                  gradient_factor: float) -> Variant:
    loss = scenario.loss
    mistaken = dataclasses.replace(scenario, loss=MistakenLoss(loss.type, loss.target, loss.classes,
                                                               value_factor, gradient_factor))
    changes = {scenario.names(scenario.output).delta} | ({"loss"} if value_factor != 1 else set())
    return Variant(id_, message, mistaken, changes=frozenset(changes),
                   form=f"loss×{value_factor:g},×{gradient_factor:g}")


# --- the catalog for one scenario -----------------------------------------------------------

def variants(scenario: Scenario) -> list[Variant]:
    """Every way the catalog's mistakes can be made in this scenario."""
    sc = scenario
    active = sc.active_layers
    found = []
    for layer in sc.layers:
        table = LAYER_VARIANTS if layer in active else FORWARD_ONLY_VARIANTS
        made = _for_layer(table, layer)
        if made is not None:
            found += made(sc, layer, sc.names(layer))
    found += _grouped(sc, found)
    found += _branch_variants(sc)
    found += _batch_and_loss_variants(sc, active)
    if sc.learning_rate is not None:
        updated = frozenset(sc.names(layer).new(role) for layer in active for role in layer.param_roles)
        found.append(Variant(
            "update-sign",
            f"Gradient descent subtracts: new = old − {sc.learning_rate:g} · grad; your updated "
            "parameters add the gradient instead.",
            dataclasses.replace(sc, learning_rate=-sc.learning_rate), changes=updated, form="learning_rate"))
    if sc.steps > 1:
        # a mistaken rule is made again in every training step: the same names, each step's prefix
        for variant in found:
            variant.changes = frozenset(sc.prefix(k) + name for k in range(1, sc.steps + 1)
                                        for name in variant.changes)
    found += _optimizer_variants(sc, active)
    order = {id_: position for position, id_ in enumerate(IDS)}
    return sorted(found, key=lambda variant: order[variant.id])


# --- the optimizer's mistakes (README "Training") ----------------------------------------------

class AdamWithoutBiasCorrection(Optimizer):
    """adam-no-bias-correction: m and v used as they are, not divided by 1 − βᵗ."""

    def corrections(self, t):
        return 1.0, 1.0


class MomentumSubtracted(Optimizer):
    """momentum-sign: the buffer keeps μ·buf but subtracts the new gradient (b = μ·b − g, the
    sign of the 'velocity' form v = μ·v − η·g carried into PyTorch's form)."""

    def momentum_sign(self):
        return -1


class MomentumStepFirst(Optimizer):
    """momentum-order: the step taken before the buffer takes in the new gradient (p ← p − lr·b,
    then b ← μ·b + g), so each step moves by the buffer of the step before: nothing at all on
    the first step, whose buffer does not exist yet."""

    def step_reads_new_buffer(self):
        return False


def _optimizer_variants(sc: Scenario, active) -> list:
    opt = sc.optimizer
    if opt is None:
        return []
    updated = frozenset(sc.names(layer, sc.prefix(k)).new(role) for k in range(1, sc.steps + 1)
                        for layer in active for role in layer.param_roles)
    if opt.type == "adam":
        return [Variant("adam-no-bias-correction",
                        "Adam divides the moments by their bias corrections, m̂ = m/(1 − β₁ᵗ) and v̂ = v/(1 − β₂ᵗ) "
                        "at step t, before the step; your updated parameters use m and v as they are.",
                        dataclasses.replace(sc, optimizer=AdamWithoutBiasCorrection(opt.type, opt.options,
                                                                                    opt.state)),
                        changes=updated, form="corrections")]
    if opt.type == "sgd" and opt.options["momentum"]:
        buffers = frozenset(sc.names(layer, sc.prefix(k)).state(role, "momentum_buffer")
                            for k in range(1, sc.steps + 1) for layer in active for role in layer.param_roles)
        return [Variant("momentum-sign",
                        f"The momentum buffer adds the new gradient: b = {opt.options['momentum']:g}·b + g, then "
                        "new = old − lr·b; your buffer subtracts it.",
                        dataclasses.replace(sc, optimizer=MomentumSubtracted(opt.type, opt.options, opt.state)),
                        changes=buffers | updated, form="momentum_sign")] + ([] if opt.options["nesterov"] else [
            Variant("momentum-order",
                    f"Momentum folds the new gradient into the buffer first, b = {opt.options['momentum']:g}·b + g, "
                    "and then steps with that buffer, new = old − lr·b; your step uses the buffer from before "
                    "this step's gradient.",
                    dataclasses.replace(sc, optimizer=MomentumStepFirst(opt.type, opt.options, opt.state)),
                    changes=updated, form="step_reads_new_buffer")])
    if opt.type == "sgd":
        # plain SGD written in torch's form: update-sign as for `learning_rate:`
        return [Variant("update-sign",
                        f"Gradient descent subtracts: new = old − {opt.options['lr']:g} · grad; your updated "
                        "parameters add the gradient instead.",
                        dataclasses.replace(sc, optimizer=dataclasses.replace(
                            opt, options={**opt.options, "lr": -opt.options["lr"]})),
                        changes=updated, form="lr")]
    return []


def _for_layer(table: dict, layer):
    """The table's entry for the layer's class or the nearest class it derives from."""
    return next((table[cls] for cls in type(layer).__mro__ if cls in table), None)


def _one(sc, layer, n, id_, message, mistake=None, shaped=None, steps=(), **attributes) -> Variant:
    """The mistake made in one layer: `mistake` mixed into its class, or `attributes`
    changed on it (then `steps` names the roles of the steps that changes)."""
    clone = _swapped(layer, mistake, **attributes)
    form = mistake.__name__ if mistake else ",".join(sorted(attributes))
    roles = mistake.mistaken_steps if mistake else steps
    return Variant(id_, message, _with_layers(sc, {layer.name: clone}), (layer.name,),
                   _step_names(layer, n, roles), form, shaped)


def _step_names(layer, n, roles) -> frozenset:
    """The traced names of a layer's steps: "in" (the error at its input), "out",
    "grad.<role>", or "grads" (every parameter gradient)."""
    names = set()
    for role in roles:
        if role == "in":
            names.add(n.x_delta)
        elif role == "out":
            names.add(n.out)
        elif role == "grads":
            names.update(n.grad(r) for r in layer.param_roles)
        else:
            names.add(n.grad(role.removeprefix("grad.")))
    return frozenset(names)


def _conv_forward(sc, layer, n, backward=False) -> list:
    if layer.params["kernel"].shape[2:] == (1, 1):
        return []
    if layer.flip:
        message = (f"This scenario's convention is convolution: {n.layer} turns its kernel by 180° "
                   "before sliding it over the input, and your numbers come from sliding it unturned.")
    else:
        message = (f"This scenario's convention is correlation: {n.layer} slides its kernel over the "
                   "input as written, and your numbers come from turning it by 180° first.")
    steps = ("out", "grad.kernel", "in") if backward else ("out",)
    return [_one(sc, layer, n, "kernel-not-flipped", message, steps=steps, flip=not layer.flip)]


def _conv_variants(sc, layer, n) -> list:
    found = _conv_forward(sc, layer, n, backward=True)
    kh, kw = layer.params["kernel"].shape[2:]
    if (kh, kw) != (1, 1):
        found.append(_one(
            sc, layer, n, "kernel-not-flipped",
            f"Your {n.grad('kernel')} is the right one turned by 180°: the gradient takes the "
            f"forward pass's orientation, so correlate {n.x} with {n.delta} "
            + ("and turn the result as the kernel was turned." if layer.flip else "without turning anything."),
            KernelGradientTurned))
        found.append(_one(
            sc, layer, n, "kernel-not-flipped",
            f"You turned {n.delta} by 180° before sliding it over {n.x} (a convolution); "
            f"{n.grad('kernel')}[u,v] is Σ {n.delta}[i,j] · {n.x}[i+u, j+v] with the delta unturned.",
            DeltaTurnedInKernelGradient))
        found.append(_one(
            sc, layer, n, "input-delta-kernel-not-rotated",
            f"To send {n.delta} back to {n.x}, slide it under the kernel turned by 180° "
            f"relative to the forward pass (a full convolution); your {n.x_delta} uses it unturned.",
            InputDeltaKernelUnturned))
        covered = covered_cells(layer)
        if layer.stride == (1, 1) and covered.any() and not covered.all():
            found.append(_one(
                sc, layer, n, "input-delta-valid-not-full",
                f"Pad {n.delta} with {kh - 1}×{kw - 1} rings of zeros before sliding the turned kernel "
                f"over it (a full, not a valid, convolution), so that the border cells of {n.x} get "
                "their error too.",
                InputDeltaValid, shaped=_valid_shape(n.x_delta, covered)))
    if _per_map(layer) > 1 and "bias" in layer.params:
        found.append(_bias_variant(sc, layer, n, "position" + (" and sample" if layer.out_shape[0] > 1 else "")))
    return found


def _conv_transpose_variants(sc, layer, n) -> list:
    if layer.params["kernel"].shape[2:] == (1, 1):
        return []
    return [
        _one(sc, layer, n, "conv-transpose-as-conv",
             f"{n.layer} is a transposed convolution: the error at its input is {n.delta} correlated with its "
             f"kernel as it is (a strided conv), not a conv's full convolution with the kernel turned by 180°; "
             f"your {n.x_delta} uses the turned kernel.", TransposedInputDeltaTurned),
        _one(sc, layer, n, "conv-transpose-as-conv",
             f"Your {n.grad('kernel')} is the right one turned by 180°: in a transposed convolution each tap's "
             f"gradient is Σ {n.x} · {n.delta} where that tap put the input, in the kernel's own orientation; "
             "nothing is turned.", KernelGradientTurned),
    ]


def _dense_variants(sc, layer, n) -> list:
    return [_bias_variant(sc, layer, n, "sample of the batch")] if layer.out_shape[0] > 1 and "bias" in layer.params \
        else []


def _maxpool_variants(sc, layer, n) -> list:
    right = f"Send each {n.delta} element to the cell of {n.x} that held its window's maximum"
    found = [
        _one(sc, layer, n, "maxpool-routed-everywhere",
             f"Send each {n.delta} element only to the cell of {n.x} that won its window in the forward "
             "pass (zeros elsewhere); you copied it to every cell of the window.", RoutedEverywhere),
        _one(sc, layer, n, "maxpool-wrong-position", f"{right}; you put it at each window's top-left cell.",
             RoutedToCorner),
        _one(sc, layer, n, "maxpool-wrong-position", f"{right}; you put it at each window's smallest cell.",
             RoutedToMinimum),
    ]
    if layer.size[0] == layer.size[1]:
        found.append(_one(sc, layer, n, "maxpool-wrong-position",
                          f"{right}; you swapped its row and column within the window.", RoutedTransposed))
    return found


def _avgpool_variants(sc, layer, n) -> list:
    if layer.area == 1:
        return []
    return [_one(sc, layer, n, "avgpool-scale-missing",
                 f"Each cell of an average-pool window gets {layer.share_label} of the window's error; "
                 f"you gave every cell of {n.x_delta} the whole {n.delta}.", AverageNotDivided)]


def _slope_missing(sc, layer, n, slope: str, mistake: type) -> Variant:
    return _one(sc, layer, n, "activation-derivative-missing",
                f"Multiply {n.delta} by {layer.type}′ = {slope} on the way back through {n.layer}; "
                f"your {n.x_delta} is {n.delta} passed through unchanged.", mistake)


def _activation_variants(sc, layer, n) -> list:
    if isinstance(layer, Identity):
        return []          # its slope is 1: there is nothing to leave out
    rule = layer.slope_rule(Ref(n.out), Ref(n.x))
    slope = str(rule)
    found = [_slope_missing(sc, layer, n, slope, SlopeMissing)]
    if n.out in rule_names(rule):
        # f′ written with the output (σ′ = out·(1 − out)): it can be fed the input instead,
        # or f applied to the output once more
        kind = layer.type
        found.append(_one(sc, layer, n, "activation-derivative-wrong-argument",
                          f"{kind}′ written with the output is {slope}; you put {n.layer}'s input in its "
                          f"place: {layer.slope_rule(Ref(n.x), Ref(n.x))}.", SlopeAtInput))
        found.append(_one(sc, layer, n, "activation-derivative-wrong-argument",
                          f"{kind}′ written with the output is {slope}; you applied {kind} to {n.out} once "
                          "more before using it.", SlopeOfOutput))
    return found


def _softmax_variants(sc, layer, n) -> list:
    return [_slope_missing(sc, layer, n, "the softmax's Jacobian", SoftmaxSlopeMissing)]


def _flatten_variants(sc, layer, n) -> list:
    orders = ("column by column", "row by row") if layer.column else ("row by row", "column by column")
    return [
        _one(sc, layer, n, "flatten-order-swapped",
             f"Lay {n.delta} back onto the map in the order {n.layer} flattened it ({orders[0]}); you "
             f"filled {n.x_delta} {orders[1]}.", UnflattenedOtherWay),
        _one(sc, layer, n, "flatten-order-swapped",
             f"This scenario flattens each map {orders[0]} (conventions.flatten); your numbers follow a "
             f"flatten {orders[1]}.", steps=("out", "in"), column=not layer.column),
    ]


class NextStepPathMissing:
    """recurrent-next-step-path-missing: h_t's delta (and c_t's) only what the output sends
    back at t, without what step t+1 sends back through W_hh (and f): backprop cut at each step."""
    mistaken_steps = ("in", "grads")
    through_time = False


def _recurrent_variants(sc, layer, n) -> list:
    if layer.in_shape[1] < 2:
        return []        # one time step: there is no later step to forget
    carried = "through weight_hh" + (" and the forget gate" if layer.cell_state else "") + \
        (" and z" if layer.type == "gru" else "")
    variant = _one(sc, layer, n, "recurrent-next-step-path-missing",
                   f"{n.layer}.h.delta at time step t is what the output sends back at t PLUS what step t+1 "
                   f"sends back {carried}; your numbers leave out the path through the next time step.",
                   NextStepPathMissing)
    variant.changes = variant.changes | frozenset(n.extra(name) for name in layer.backward_extras)
    return [variant]


class BranchDropped:
    """branch-missing-where-used-twice: one reader of a value read by several sends it nothing
    back, so the value's delta has only the other readers' parts."""
    mistaken_steps = ()
    dropped = ()

    def backward(self, *args, **kwargs):
        result = super().backward(*args, **kwargs)
        if self.merge:
            result["in"] = [0 * part if k in self.dropped else part for k, part in enumerate(result["in"])]
        else:
            result["in"] = 0 * result["in"]
        return result


def _branch_variants(sc) -> list:
    """For each value read by several nodes (or twice by one), each reader's part left out."""
    found = []
    plan = sc.plan
    for value_name, readers in plan.readers.items():
        value = plan.value(value_name)
        uses = [(reader, k) for reader in readers for k, read in enumerate(reader.reads) if read == value]
        if len(uses) < 2:
            continue
        for reader, k in uses:
            layer = sc.layer(reader.name)
            clone = _swapped(layer, BranchDropped, dropped=(k,))
            others = sorted({r.name for r, j in uses if (r.name, j) != (reader.name, k)})
            found.append(Variant(
                "branch-missing-where-used-twice",
                f"{value_name} is used {len(uses)} times, so {value.delta} is the SUM of what each use sends "
                f"back; your {value.delta} leaves out the branch through {reader.name} (it has only what "
                f"{', '.join(others)} send{'s' if len(others) == 1 else ''} back).",
                _with_layers(sc, {layer.name: clone}), (layer.name,), frozenset({value.delta}),
                f"BranchDropped:{reader.name}:{k}"))
    return found


# The mistakes each layer class can carry (looked up through the class's bases), in a layer
# the backward pass runs through, and in one after `upstream.layer` that runs forward only.
LAYER_VARIANTS = {Conv: _conv_variants, Dense: _dense_variants, MaxPool: _maxpool_variants,
                  AvgPool: _avgpool_variants, Activation: _activation_variants, Softmax: _softmax_variants,
                  Flatten: _flatten_variants, ConvTranspose: _conv_transpose_variants,
                  Recurrent: _recurrent_variants}
FORWARD_ONLY_VARIANTS = {Conv: _conv_forward}


# --- batch norm and dropout ---------------------------------------------------------------

class _Kept:
    """The layer's `stage` callback, passed on, keeping what it returned: the inner values
    as the rest of the run used them (rounded, or pinned by a sheet's answers)."""

    def __init__(self, stage):
        self.stage, self.bounds, self.values, self.kept = stage, stage.bounds, stage.values, {}

    def __call__(self, name, values, **options):
        self.kept[name] = self.stage(name, values, **options)
        return self.kept[name]


class StatisticsConstant:
    """batchnorm-statistics-constant: the batch's mean and variance taken as constants in
    backward, as eval mode may: x.delta = x̂.delta / √(var + eps), their paths left out."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs, stage):
        kept = _Kept(stage)
        result = super().backward(x, out, delta, p, recs, kept)
        xhat_delta = kept.kept["xhat.delta"].reshape(-1).tolist()
        var = stage.values["var"].reshape(-1).tolist()
        x_delta = [d * _inverse_root(var[g] + self.eps) for d, g in zip(xhat_delta, self.group_of)]
        result["in"] = np.array(x_delta, dtype=float).reshape(self.in_shape)
        return result


class DropoutMaskMissing:
    """dropout-mask-missing: every element's error scaled by 1/(1 − p), dropped or not."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs, stage):
        return {"in": np.asarray(delta, dtype=float) * self.scale}


class DropoutScaleMissing:
    """dropout-scale-missing: the error masked but not scaled by 1/(1 − p)."""

    mistaken_steps = ("in",)

    def backward(self, x, out, delta, p, recs, stage):
        return {"in": np.asarray(delta, dtype=float) * stage.values["mask"]}


def _batchnorm_variants(sc, layer, n) -> list:
    if not layer.train:
        return []          # eval mode's statistics are constants: the mistake is the rule
    return [_one(sc, layer, n, "batchnorm-statistics-constant",
                 f"In train mode {n.extra('mean')} and {n.extra('var')} are computed from {n.x}, so "
                 f"{n.x_delta} takes three paths back: through {n.extra('xhat')}, {n.extra('var')} and "
                 f"{n.extra('mean')} (the terms with {n.extra('var.delta')} and {n.extra('mean.delta')}); yours "
                 f"is {n.extra('xhat.delta')} / √({n.extra('var')} + eps) alone, the statistics taken as "
                 "constants.", StatisticsConstant)]


def _dropout_variants(sc, layer, n) -> list:
    if layer.p in (0, 1):
        return []          # nothing scaled (p = 0) or nothing kept (p = 1): both mistakes change nothing
    found = []
    rule = f"{n.x_delta} = {n.delta} · {n.extra('mask')} / (1 − {layer.p:g})"
    if not layer.mask.all():
        found.append(_one(sc, layer, n, "dropout-mask-missing",
                          f"An element {n.layer} dropped in the forward pass gets no error back: {rule}; "
                          f"yours leaves out the mask.", DropoutMaskMissing))
    found.append(_one(sc, layer, n, "dropout-scale-missing",
                      f"The kept elements were scaled by 1/(1 − {layer.p:g}) on the way forward, and their error "
                      f"is scaled the same on the way back: {rule}; yours leaves out the 1/(1 − {layer.p:g}).",
                      DropoutScaleMissing))
    return found


LAYER_VARIANTS.update({BatchNorm: _batchnorm_variants, Dropout: _dropout_variants})


def _bias_variant(sc, layer, n, over: str) -> Variant:
    def shaped(name, shape):
        if name == n.grad("bias") and _squeezed(shape) == _squeezed(layer.out_shape):
            return n.delta, lambda values: values
        return None

    return _one(sc, layer, n, "bias-gradient-not-summed",
                f"{n.grad('bias')} is one number per output map: the sum of {n.delta} over every "
                f"{over}; yours is not that sum.", BiasGradientAveraged, shaped=shaped)


def _valid_shape(x_delta: str, covered: np.ndarray):
    rows, columns = np.nonzero(covered.any(axis=1))[0], np.nonzero(covered.any(axis=0))[0]
    crop = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))

    def shaped(name, shape):
        if name != x_delta:
            return None
        return name, lambda values: values[(Ellipsis,) + crop]

    return shaped


def _squeezed(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


def _grouped(sc, found) -> list:
    """A mistake made in every layer of a kind at once (a student who does it once does it
    everywhere), when the scenario has several such layers: one layer's variant alone
    would not reproduce answers given only after the last of them."""
    groups = {}
    for variant in found:
        if len(variant.layers) == 1:
            groups.setdefault((variant.id, variant.form), []).append(variant)
    combined = []
    for (id_, form), members in groups.items():
        if len(members) < 2:
            continue
        replaced = {m.layers[0]: m.scenario.layer(m.layers[0]) for m in members}
        names = tuple(replaced)
        combined.append(Variant(id_, f"{members[0].message} The same goes for {', '.join(names[1:])}.",
                                _with_layers(sc, replaced), names,
                                frozenset().union(*(m.changes for m in members)), form,
                                parts=tuple(m.changes for m in members)))
    return combined


def _batch_and_loss_variants(sc, active) -> list:
    found = []
    samples = sc.input.shape[0]
    loss = sc.loss
    if loss is not None:
        last = sc.names(sc.output)
        delta, out = last.delta, last.out
        rule = LOSSES[loss.type].delta_rule(Ref(delta), Ref(out))
        found.append(_loss_variant(sc, "loss-gradient-sign",
                                   f"With {loss.type}, {rule}; yours has the opposite sign (the target on "
                                   f"the wrong side): flip the sign of {delta}.", 1.0, -1.0))
        if loss.type in ("half_sse", "sse", "mse"):
            if loss.type == "half_sse":
                right, factor = f"the ½ cancels the 2 from the square: {rule}", 2.0
            else:
                right, factor = f"the square brings down a 2: {rule}", 0.5
            found.append(_loss_variant(sc, "loss-factor-two", f"With {loss.type}, {right}; yours is off by a "
                                       "factor 2.", 1.0, factor))
            found.append(_loss_variant(sc, "loss-factor-two", f"With {loss.type}, {right}; your loss and {delta} "
                                       "are both off by a factor 2.", factor, factor))
        if samples > 1 and loss.type in ("half_sse", "sse"):
            text = (f"{loss.type} adds up the {samples} samples of the batch, so do not divide by {samples}")
            found.append(_loss_variant(sc, "batch-averaged-not-summed", f"{text}: {delta} is off by a factor "
                                       f"{samples}.", 1.0, 1.0 / samples))
            found.append(_loss_variant(sc, "batch-averaged-not-summed", f"{text}: your loss and {delta} are "
                                       "averaged.", 1.0 / samples, 1.0 / samples))
        if samples > 1 and loss.type in ("mse", "cross_entropy", "bce"):
            text = f"{loss.type} averages over the {samples} samples of the batch: divide by {samples}"
            found.append(_loss_variant(sc, "batch-summed-not-averaged", f"{text}; your {delta} is summed.",
                                       1.0, float(samples)))
            found.append(_loss_variant(sc, "batch-summed-not-averaged", f"{text}; your loss and {delta} are "
                                       "summed.", float(samples), float(samples)))
    if samples > 1 and (loss is None or loss.type in ("half_sse", "sse")):
        with_params = [layer for layer in active if layer.param_roles]
        if with_params:
            replaced = {layer.name: _swapped(layer, ParameterGradientsScaled, gradient_factor=1.0 / samples)
                        for layer in with_params}
            found.append(Variant("batch-averaged-not-summed",
                                 f"Add up the parameter gradients over the {samples} samples of the batch; "
                                 f"yours are averaged (divided by {samples}).",
                                 _with_layers(sc, replaced), tuple(replaced),
                                 frozenset().union(*(_step_names(layer, sc.names(layer), ("grads",))
                                                     for layer in with_params)),
                                 "ParameterGradientsScaled"))
    return found


# --- which mistakes reproduce a sheet -------------------------------------------------------

@dataclass
class MistakenRun:
    variant: Variant
    refs: dict               # the mistaken run's numbers without the sheet's answers
    first: int               # position of the first step that can differ: a changed step, or one
                             # whose numbers differ from the clean run


class Catalog:
    """The catalog of one scenario: its variants, and each one's run without answers, made
    when a sheet first needs it and shared by every later sheet of the same problem."""

    def __init__(self, model):
        self.model = model
        self.variants = variants(model.scenario)
        self._runs: dict = {}
        self._reach: dict = {}

    def reach(self, position: int) -> frozenset:
        """The steps the variant's changed steps feed, themselves included (the clean
        trace's `reads`, followed forward)."""
        if position not in self._reach:
            self._reach[position] = frozenset(self.model.downstream(self.variants[position].changes))
        return self._reach[position]

    def run(self, position: int) -> MistakenRun | None:
        """The variant's run without answers; None when it drives the network out of range
        (then it is no candidate)."""
        if position not in self._runs:
            variant, model = self.variants[position], self.model
            try:
                reuse = model.reusable(self.reach(position), exclude=variant.layers)
                refs = references(run(variant.scenario, terms=False, reuse=reuse, bounds=True), variant.scenario)
            except ScenarioError:
                self._runs[position] = None
                return None
            # with the clean numbers a changed step may happen to come out the same (every
            # window's maximum in its top-left cell), with a sheet's numbers not
            first = min([model.order[name] for name in variant.changes] +
                        [model.order[name] for name in model.order if not np.array_equal(refs[name], model.refs[name])])
            self._runs[position] = MistakenRun(variant, refs, first)
        return self._runs[position]


def diagnose(catalog: Catalog, rows: list, overrides: dict, own: dict, match, evidence,
             near=None) -> tuple[list, list]:
    """The catalog entries that reproduce the sheet's wrong numbers, and the labels of the
    wrong answers none reproduces.

    rows: the checker's rows; overrides: the sheet's answers as pinned patches; own: every
    step's numbers computed from the sheet's own answers (`References`, with their noise
    bounds); match(written, value, noise) → truthy, `noise` the bound on `value`'s float noise;
    evidence(written) → the significant digits a match with it is worth.  near(written,
    value) → truthy within one unit of the last written decimal: given when the scenario
    rounds (--round), whose sheets differ from bptrace's chain of rounded numbers in the
    last digit.  Such a number is "rounding-only", and mistaken runs are matched with near."""
    wrong = [row for row in rows if row.verdict == WRONG]
    if not wrong:
        return [], []
    found = {}
    model = catalog.model
    if near is not None:
        rounded = [row.label for row in wrong if row.shape is None and row.written is not None and (
            near(row.written, row.bptrace, row.noise)
            or near(row.written, float(own[row.name][row.index]), float(own.noise[row.name][row.index])))]
        if rounded:
            found["rounding-only"] = {"variants": [], "labels": rounded, "message": (
                f"{model.scenario.rounding.describe() if model.scenario.rounding else 'Rounding'}: your "
                "number is within one unit of its last decimal of bptrace's; the mismatch is rounding only.")}
            # to the catalog, a number off by rounding only is a right one (which a mistake
            # that changes its step must still reproduce)
            rows = [dataclasses.replace(row, verdict=RIGHT) if row.label in rounded else row for row in rows]
            wrong = [row for row in wrong if row.label not in rounded]
        match = near
    wrong_steps = {row.name for row in wrong}
    # a mistake that reaches a delta the sheet answered whole and right against the clean
    # run (some of it not 0) would contradict it: not run either, so that a late wrong
    # answer after right ones runs only the mistakes of its own layer.  (Only deltas: a sum
    # over positions, a bias gradient, can come out right from a mistaken routing.)
    whole = {row.name for row in rows if row.shape is None and not row.element and row.verdict == RIGHT
             and row.bptrace != 0 and row.name.endswith(".delta")}
    right_steps = whole - {row.name for row in rows if row.verdict != RIGHT}
    for position in range(len(catalog.variants)):
        reach = catalog.reach(position)
        # a mistake whose changed steps feed no wrong answer cannot explain any: not run
        if not wrong_steps & reach or reach & right_steps:
            continue
        # made in several layers at once, it adds nothing where one of them reaches no wrong
        # step: that one's own variant is run on its own
        if any(not wrong_steps & model.downstream(part) for part in catalog.variants[position].parts):
            continue
        mistaken = catalog.run(position)
        if mistaken is None:
            continue
        explained = _explained(catalog, mistaken, rows, overrides, own, match)
        if explained:
            entry = found.setdefault(mistaken.variant.id, {"variants": [], "labels": []})
            entry["variants"].append(mistaken.variant)
            entry["labels"] += [label for label in explained if label not in entry["labels"]]
    for id_, (message, labels) in _slips(model, wrong, own, match).items():
        found[id_] = {"variants": [], "labels": labels, "message": message}
    order = {row.label: position for position, row in enumerate(rows)}
    by_label = {row.label: row for row in rows}

    def digits(label):
        row = by_label[label]
        return sum(evidence(w) for w in (row.answer.written if row.shape is not None else [row.written]))

    diagnoses = []
    for id_, entry in found.items():
        if sum(digits(label) for label in entry["labels"]) < EVIDENCE_DIGITS:
            continue
        labels = sorted(entry["labels"], key=order.get)
        layers = []
        for variant in entry["variants"]:
            layers += [name for name in variant.layers if name not in layers]
        message = entry["message"] if "message" in entry else entry["variants"][0].message
        diagnoses.append(Diagnosis(id_, message, labels, layers))
    # a mistake that reproduces only part of what another reproduces adds nothing to it
    # (averaging over the batch also averages the bias gradient): keep the larger one
    diagnoses = [d for d in diagnoses
                 if not any(set(d.explains) < set(other.explains) for other in diagnoses)]
    # a slip (the right number written wrongly) is named only for what no mistake of the
    # catalog reproduces: a 2×2 delta laid back in the other flatten order is also transposed
    caught = {label for d in diagnoses if d.id not in SLIPS for label in d.explains}
    diagnoses = [d for d in diagnoses if d.id not in SLIPS or not set(d.explains) <= caught]
    diagnoses.sort(key=lambda d: (order[d.explains[0]], IDS.index(d.id)))
    covered = {label for d in diagnoses for label in d.explains}
    return diagnoses, [row.label for row in wrong if row.label not in covered]


def _explained(catalog, mistaken: MistakenRun, rows, overrides, own, match) -> list:
    """The labels of the wrong answers this mistake reproduces (whole steps only), or []
    when it reproduces none or disagrees with a number the sheet got right."""
    model, variant = catalog.model, mistaken.variant
    order = model.order
    relevant = [row for row in rows if order[row.name] >= mistaken.first]
    wrong_steps = {}
    for row in relevant:
        if row.verdict == WRONG:
            wrong_steps.setdefault(row.name if row.shape is None else ("shape", row.label), []).append(row)
    if not wrong_steps:
        return []
    source = _sources(model, mistaken, overrides)
    mine = {}

    def with_answers(name):
        """This mistake's numbers for a step, computed from the sheet's own answers, and
        their noise bounds."""
        where = source[name]
        if where == "own":
            return own[name], own.noise[name]
        if where == "clean":
            return mistaken.refs[name], mistaken.refs.noise[name]
        if "trace" not in mine:
            mine["trace"] = _run_with(model, variant, overrides, model.downstream(variant.changes))
        found = mine["trace"]
        return (found[name], found.noise[name]) if found is not None else None

    def fits(row, optimistic):
        refs = mistaken.refs
        if match(row.written, float(refs[row.name][row.index]), float(refs.noise[row.name][row.index])):
            return True
        if optimistic and source[row.name] == "run":
            return True              # not known without running
        found = with_answers(row.name)
        return found is not None and bool(match(row.written, float(found[0][row.index]), float(found[1][row.index])))

    def shaped_fits(row, optimistic):
        found = variant.shaped(row.name, row.answer.values.shape) if variant.shaped else None
        if found is None:
            return False
        step, select = found
        if optimistic and source[step] == "run":
            return True
        for found in ((mistaken.refs[step], mistaken.refs.noise[step]), with_answers(step)):
            if found is None:
                continue
            chosen = np.asarray(select(found[0])).reshape(-1)
            noise = np.asarray(select(found[1])).reshape(-1)
            if chosen.size == len(row.answer.written) and all(
                    match(w, float(v), float(e)) for w, v, e in zip(row.answer.written, chosen, noise)):
                return True
        return False

    def explained_steps(optimistic):
        labels = []
        for key, step_rows in wrong_steps.items():
            test = shaped_fits if isinstance(key, tuple) else fits
            if all(test(row, optimistic) for row in step_rows):
                labels += [row.label for row in step_rows]
        return labels

    def contradicted(optimistic):
        return any(row.verdict != WRONG and row.shape is None and not fits(row, optimistic)
                   for row in relevant)

    # first with what is known without running, optimistic where only a run would tell
    if not explained_steps(True) or contradicted(True):
        return []
    if contradicted(False):
        return []
    return explained_steps(False)


def _run_with(model, variant: Variant, overrides: dict, reach: frozenset):
    """The mistaken run with the sheet's answers pinned, re-running only what the mistake
    or an answer that differs from the clean run reaches."""
    differing = {name for name, patch in overrides.items()
                 if not np.array_equal(patch.values[patch.mask], model.trace[name].values[patch.mask])}
    reuse = model.reusable(set(reach) | model.downstream(differing), exclude=variant.layers)
    try:
        return references(run(variant.scenario, overrides=overrides, terms=False, reuse=reuse, bounds=True),
                          variant.scenario)
    except ScenarioError:
        return None


def _sources(model, mistaken: MistakenRun, overrides: dict) -> dict:
    """For each step, where the mistaken run *with the sheet's answers* gets its numbers
    without running it: "own" (the mistake cannot reach the step, so it is the sheet's own
    run), "clean" (the sheet pinned nothing the step depends on, so it is the mistaken run
    without answers), or "run" (only running tells)."""
    perturbed = {name for name, patch in overrides.items()
                 if not np.array_equal(patch.values[patch.mask], mistaken.refs[name][patch.mask])}
    whole = {name for name, patch in overrides.items() if patch.mask.all()}
    value_differs, pinned_above, sources, seen_pins = {}, {}, {}, False
    for name in model.order:
        reads = model.reads[name]
        changed = name in mistaken.variant.changes
        differs = changed or any(value_differs[r] for r in reads)
        value_differs[name] = differs and name not in whole
        if changed:
            # a changed rule may read more than the clean step's `reads`: any pin above counts
            pinned_above[name] = seen_pins
        else:
            pinned_above[name] = any(r in perturbed or pinned_above[r] for r in reads)
        seen_pins = seen_pins or name in perturbed
        sources[name] = "own" if not differs else ("clean" if not pinned_above[name] else "run")
    return sources


# --- slips: the right number, written wrongly -------------------------------------------------

def _slips(model, wrong: list, own: dict, match) -> dict:
    """id → (message, labels of the wrong numbers the slip reproduces)."""
    sc = model.scenario
    # the rate of `learning_rate:` or of torch's form `optimizer: {type: sgd, lr: …}` alike
    rate = float(sc.update.options["lr"]) if sc.update is not None else None
    base = sc.conventions.index_base
    found: dict = {}

    def add(id_, message, label):
        entry = found.setdefault(id_, (message, []))
        entry[1].append(label)

    for row in wrong:
        name = row.name
        # each source's numbers and their noise bounds
        sources = [(model.refs[name], model.refs.noise[name]), (own[name], own.noise[name])]
        if row.shape is not None:
            # a whole step in the wrong shape: the step's matrix transposed
            for values, noise in sources:
                turned = np.swapaxes(np.squeeze(values), -1, -2) if np.squeeze(values).ndim >= 2 else None
                if turned is not None and turned.shape == np.squeeze(row.answer.values).shape and all(
                        match(w, float(v), float(e)) for w, v, e in
                        zip(row.answer.written, turned.reshape(-1), np.swapaxes(np.squeeze(noise), -1, -2).reshape(-1))):
                    add("transposed", f"Your {name} is bptrace's transposed (rows and columns swapped): "
                        f"{name} has shape {'×'.join(map(str, np.squeeze(values).shape))}.", row.label)
                    break
            continue
        cell = row.index

        def fits(value, noise):
            return value is not None and bool(match(row.written, float(value), float(noise)))

        if any(fits(-values[cell], noise[cell]) for values, noise in sources) and row.bptrace != 0:
            add("sign-flipped", "The sign is flipped: your number is bptrace's with the opposite sign "
                "(a minus sign dropped or added).", row.label)
            continue
        values_shape = model.refs[name].shape
        axes = kept_axes(values_shape)
        if len(axes) >= 2 and values_shape[axes[-1]] == values_shape[axes[-2]] and not row.element:
            swapped = list(cell)
            swapped[axes[-1]], swapped[axes[-2]] = cell[axes[-2]], cell[axes[-1]]
            if tuple(swapped) != cell and any(fits(values[tuple(swapped)], noise[tuple(swapped)])
                                              for values, noise in sources):
                add("transposed", f"Your {name} is bptrace's transposed: element [i,j] holds [j,i].", row.label)
                continue
        if row.element:
            shift = -1 if base == 0 else 1
            other = list(cell)
            for axis in axes:
                other[axis] += shift
            if all(0 <= i < d for i, d in zip(other, values_shape)) and any(
                    fits(values[tuple(other)], noise[tuple(other)]) for values, noise in sources):
                add("index-base", f"This scenario counts indices from {base} (conventions.index_base); your "
                    f"answer is the element that counting from {1 - base} names.", row.label)
                continue
        if rate is not None and ".grad." in name and any(fits(rate * values[cell], abs(rate) * noise[cell])
                                                         for values, noise in sources):
            add("learning-rate-in-gradient", f"{name} is the gradient itself; yours has the learning rate "
                f"{rate:g} already applied (η · gradient is the update's step, not the gradient).", row.label)
            continue
        if ".new." in name:
            grad = name.replace(".new.", ".grad.")
            candidates = [(model.refs[grad][cell], model.refs.noise[grad][cell]),
                          (own[grad][cell], own.noise[grad][cell])] if grad in model.refs else []
            if grad in model.refs and any(fits(value, noise) or (rate is not None and fits(-rate * value, abs(rate) * noise))
                                          for value, noise in candidates):
                add("update-is-gradient", f"{name} is the updated parameter, not {grad}: you wrote the "
                    "gradient (or the step) instead of the new value.", row.label)
    return found
