"""`bptrace explain`: where one traced number comes from, as plain data.

`explain(scenario, "c1.grad.kernel[0,1]")` runs the engine asking it to record that one
element's terms (whatever the step's size), reads them back from the trace, and returns an
`Explanation`: the rule, every term with its factors (each labelled with its traced name,
its index as a person writes it, and its value), the running sum, and the total, which is
the engine's own number.  Some steps get a second view:

* an element of a max-pool's input delta: every window the cell is in, who won it, why;
* an element of a conv layer's input delta: the 'full' convolution of the zero-padded
  (and, for a stride, dilated) delta with the kernel turned by 180°, computed here
  independently of the engine from the layer's geometry, next to the engine's direct
  chain-rule terms;
* an element of a dense layer's input delta: the row of Wᵀ and the delta it meets.

A name without an index (of a step with more than one element) gives a `StepOverview`:
the rule, where the values come from, and every element with its index.

Nothing here prints; `bptrace.render.explain_text` formats these objects.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .errors import ScenarioError, did_you_mean
from .scenario import Scenario, parse_element
from .trace import Expansion
from .tensors import canonical_index, describe_shape, display_index, element, format_index, squeezed_shape

# agreement between the two views of a conv input delta (they sum the same products in a
# different order, so only rounding noise may separate them)
AGREE_RTOL = 1e-9
AGREE_ATOL = 1e-12


@dataclass(frozen=True)
class Operand:
    """One factor as a person reads it: `c1.kernel[0,1]` = 0.15, or a constant `1/4`."""
    label: str                 # the name with its index, e.g. "c1.kernel[0,1]", or "1/4"
    name: str | None           # the traced name (or the expression around one, "1 − s1.out"); None for a constant
    index: tuple | None        # the index as written (index base applied), None for a constant
    value: float


@dataclass(frozen=True)
class Term:
    operands: tuple            # of Operand; the term is their product
    product: float
    running: float             # the sum of this and every earlier term


@dataclass
class Window:
    """A max-pool window that contains the explained cell of the pool's input."""
    output: Operand            # the pool's output element of this window
    cells: list                # Operand per cell of the window, row-major
    winner: int                # position in `cells` of the maximum
    tie: bool                  # another cell held the same maximum
    mine: int                  # position in `cells` of the explained cell
    delta: Operand             # the error at this window's output

    @property
    def won(self) -> bool:
        return self.winner == self.mine


@dataclass
class ChannelPatch:
    """One output map's share of the full convolution at the explained input cell."""
    delta_name: str            # e.g. "c1.delta[2]" or "c1.delta" (one map)
    rows: tuple                # rows of the padded delta under the window (first, last), index base applied
    cols: tuple
    patch: np.ndarray          # kh×kw values of the padded, dilated delta under the window
    kernel: np.ndarray         # kh×kw: the kernel turned by 180° (for this output map and input map)
    kernel_indices: list       # kh×kw nested list: the index (as written) of each cell's kernel element
    products: np.ndarray       # patch · kernel, elementwise
    total: float


@dataclass
class FullConvolution:
    """The second view of a conv input delta: the delta, dilated by the stride and padded
    with zeros, slid under the kernel turned by 180°."""
    kernel: str                # the traced name of the kernel
    flipped_from: str          # "the kernel as used in the forward pass, turned by 180°" ...
    stride: tuple
    pad_before: tuple          # zeros before the dilated delta, (rows, cols)
    padded: list               # per output map in this group: the whole padded, dilated delta (2-D)
    index_base: int
    channels: list             # ChannelPatch per output map that reads this input map
    total: float
    direct: float              # the engine's chain-rule total
    agree: bool
    dilation: tuple = (1, 1)   # the kernel's taps this far apart: the window's cells too


@dataclass
class DenseRow:
    """An element of a dense layer's input delta: row k of Wᵀ times the delta."""
    input: int                 # k, the input feature (index base applied)
    outputs: list              # o of each output unit (index base applied), in order
    weights: list              # Operand per output: W[o,k]
    deltas: list               # Operand per output: delta[o]


@dataclass(frozen=True)
class Contribution:
    """What one reader sends back to a value several layers read."""
    layer: str                 # the reader it came through
    rule: str
    value: float


@dataclass
class Explanation:
    element: str               # "c1.grad.kernel[0,1]"
    name: str
    index: tuple               # as written (index base applied); () for a single number
    canonical: tuple
    phase: str
    layer: str | None
    layer_type: str | None
    rule: str
    kind: str                  # "sum", "max", "apply", or "value" (not computed from other values)
    origin: str | None = None  # for kind "value": where the number comes from
    terms: list = field(default_factory=list)       # Term, for "sum"
    fn: str | None = None                           # for "apply": σ, tanh, ...
    argument: Operand | None = None                 # for "apply"
    candidates: list = field(default_factory=list)  # Operand, for "max"
    winner: int | None = None
    tie: bool = False
    total: float = 0.0         # the engine's own result for this element
    value: float = 0.0         # what later steps use (differs when rounded or given)
    replaced: str | None = None  # why value differs from total: "given" or the rounding
    windows: list = field(default_factory=list)     # Window, through a max-pool backward
    share: str | None = None   # "1/4", through an average pool backward
    share_reason: str = "1 / the window's area"
    full_conv: FullConvolution | None = None
    dense_row: DenseRow | None = None
    index_base: int = 0
    contributions: list = field(default_factory=list)  # Contribution per reader, for a summed delta


@dataclass
class StepOverview:
    """A whole step: the rule, where it comes from, every element."""
    name: str
    phase: str
    layer: str | None
    layer_type: str | None
    rule: str
    shape: str                 # "4×4"
    reads: tuple
    elements: list             # (index as written, value)
    rounded: str | None
    given: int                 # how many elements were pinned by `given`
    computed: list | None      # (index, engine's value) of the elements that were replaced
    notes: list
    index_base: int
    example: str               # an element name to explain next, e.g. "c1.out[0,0]"


# --- entry points ------------------------------------------------------------------------

def explain(scenario: Scenario, target: str):
    """`name` or `name[index]` → an `Explanation` (one element) or a `StepOverview`.

    Raises ScenarioError (with a did-you-mean hint) for a name or index that does not exist.
    """
    name, index = locate(scenario, target)
    if index is None:
        from .engine import run

        return overview(scenario, run(scenario), name)
    return explain_many(scenario, [(name, index)])[0]


def locate(scenario: Scenario, target: str):
    """'c1.out[0,1]' → ('c1.out', canonical index); a single-number step needs no index."""
    try:
        name, written = parse_element(target)
    except ValueError as exc:
        raise ScenarioError(str(exc), key=target) from None
    if name not in scenario.shapes:
        raise ScenarioError(f"'{name}' is not a value in this trace", key=target,
                            hint=did_you_mean(name, scenario.shapes) or
                            "`bptrace run SCENARIO --format json` lists every name")
    shape = scenario.shapes[name]
    base = scenario.conventions.index_base
    if written is None:
        return name, (tuple(0 for _ in shape) if not squeezed_shape(shape) else None)
    try:
        return name, canonical_index(shape, written, base)
    except IndexError as exc:
        raise ScenarioError(f"{exc} (the shape is {describe_shape(shape)}, indices from {base})",
                            key=target) from None


def explain_many(scenario: Scenario, wanted) -> list:
    """Explain several (name, canonical index) elements from one run of the engine."""
    from .engine import run

    requests: dict = {}
    for name, index in wanted:
        requests.setdefault(name, set()).add(tuple(index))
        for other, other_index in _related(scenario, name, tuple(index)):
            requests.setdefault(other, set()).add(other_index)
    trace = run(scenario, explain=requests)
    return [_Explainer(scenario, trace).element(name, tuple(index)) for name, index in wanted]


def _number(value):
    """A factor's value: a float, a fraction (`arithmetic: exact`, written whole as p/q when
    its decimals do not end) or a formula (`arithmetic: symbolic`), each as it is."""
    return value if hasattr(value, "expr") or isinstance(value, Fraction) else float(value)


def overview(scenario: Scenario, trace, name: str) -> StepOverview:
    step = trace[name]
    base = trace.conventions["index_base"]
    # exact and symbolic: each element as it is (1/3, c2.delta·w²₁), not its float (nan for letters)
    elements = [(display_index(step.shape, idx, base),
                 _number(step.exact[idx]) if step.exact is not None else float(step.values[idx]))
                for idx in np.ndindex(*step.shape)]
    replaced = None
    if step.computed is not None:
        replaced = [(display_index(step.shape, idx, base), float(step.computed[idx]))
                    for idx in np.ndindex(*step.shape) if step.computed[idx] != step.values[idx]]
    first = display_index(step.shape, tuple(0 for _ in step.shape), base)
    return StepOverview(
        name=name, phase=step.phase, layer=step.layer, layer_type=_layer_type(scenario, step.layer),
        rule=step.rule, shape=describe_shape(step.shape), reads=step.reads, elements=elements,
        rounded=step.rounded, given=int(step.given.sum()) if step.given is not None else 0,
        computed=replaced, notes=list(step.notes), index_base=base,
        example=name + format_index(first))


# --- what else the engine must record --------------------------------------------------

def _delta_below(scenario: Scenario, name: str):
    """The layer whose input delta `name` is, or None (also when several layers read the
    value: its delta is then a sum, and each reader's share is shown as a contribution)."""
    readers = scenario.plan.readers_of_delta(name)
    return scenario.layer(readers[0].name) if len(readers) == 1 else None


def _related(scenario: Scenario, name: str, index: tuple):
    """Elements whose terms an explanation also needs: the windows of a max-pool."""
    layer = _delta_below(scenario, name)
    if layer is not None and layer.type in ("maxpool", "global_maxpool"):
        for window in _windows_containing(layer, index):
            yield f"{layer.name}.out", window


def _windows_containing(layer, index):
    """The output index of every pooling window that holds input cell `index`."""
    n, c, h, w = index
    _, _, Ho, Wo = layer.grid
    for i, j in np.ndindex(Ho, Wo):
        if (h, w) in list(layer.window(i, j)):
            yield layer.at(n, c, i, j)


def _layer_type(scenario: Scenario, layer_name):
    return scenario.layer(layer_name).type if layer_name in scenario.plan else None


# --- reading the trace -----------------------------------------------------------------

class _Explainer:
    def __init__(self, scenario: Scenario, trace):
        self.scenario = scenario
        self.trace = trace
        self.base = trace.conventions["index_base"]
        # longest first, so that "c1.out" is not found inside "c1.out2.out"
        self.names = sorted(trace.names(), key=len, reverse=True)

    # labels ----------------------------------------------------------------------------

    def label(self, name: str, index) -> str:
        return element(name, self.trace[name].shape, index, self.base)

    def written(self, name, index) -> tuple:
        return display_index(self.trace[name].shape, index, self.base)

    def operand(self, factor, step) -> Operand:
        if factor.index is None:
            return Operand(factor.name, None, None, _number(factor.value))
        if factor.name in self.trace:
            return Operand(self.label(factor.name, factor.index), factor.name,
                           self.written(factor.name, factor.index), _number(factor.value))
        return self._derived(factor, step)

    def _derived(self, factor, step) -> Operand:
        """A factor such as `1 − s1.out` or `(out − target)²` at an index: the index goes
        after each traced name in it (and after `target`); a bare `out` is the output the
        step read."""
        text = factor.name
        found = [name for name in self.names if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.\[])", text)]
        if found:
            owner = found[0]
        else:
            owner = step.reads[0] if step.reads else None
            if owner and re.search(r"(?<![\w.])out(?![\w.])", text):
                text = re.sub(r"(?<![\w.])out(?![\w.])", owner, text)
                found = [owner]
        shape = self.trace[owner].shape if owner else None
        if shape is not None and len(shape) == len(factor.index):
            shown = display_index(shape, factor.index, self.base)
        else:
            shown = tuple(i + self.base for i in factor.index)
        suffix = format_index(shown)
        expression = text            # e.g. "1 − s1.out": what every element of this factor is
        for name in found:
            # a function of the whole value (softmax(d.out)) is indexed after its parenthesis:
            # softmax(d.out)[2] is element 2 of the softmax, not the softmax of element 2
            text = re.sub(rf"(?<=\w\()({re.escape(name)}\))", lambda m: m.group(1) + suffix, text)
            text = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.\[])(?!\)\[)", lambda _m, n=name: n + suffix, text)
        text = re.sub(r"(?<![\w.])target(?![\w.\[])", "target" + suffix, text)
        if text == expression:
            text += suffix
        return Operand(text, expression, shown, _number(factor.value))

    # one element -----------------------------------------------------------------------

    def element(self, name: str, index: tuple) -> Explanation:
        step = self.trace[name]
        engine_value = float(step.computed[index] if step.computed is not None else step.values[index])
        value = float(step.values[index])
        if step.exact is not None and hasattr(step.exact[index], "expr"):
            # `arithmetic: symbolic`: the element is a formula, its terms formulas
            engine_value = value = step.exact[index]
        elif step.exact is not None:
            # `arithmetic: exact`: the fraction itself (1/3, not 0.3333333333); the engine's
            # own result is the same fraction unless rounding or `given` replaced it
            value = Fraction(step.exact[index])
            if step.computed is None:
                engine_value = value
        replaced = None
        if value != engine_value or (step.given is not None and step.given[index]):
            if step.given is not None and step.given[index]:
                replaced = "given"
            elif step.rounded:
                replaced = f"rounded ({step.rounded})"
        layer = self.scenario.layer(step.layer) if step.layer in self.scenario.plan else None
        shown = self.written(name, index)
        result = Explanation(
            element=self.label(name, index), name=name, index=shown, canonical=index, phase=step.phase,
            layer=step.layer, layer_type=layer.type if layer else None, rule=step.rule, kind="value",
            total=engine_value, value=value, replaced=replaced, index_base=self.base)
        if step.expansions is None:
            # the engine records terms for every element asked for; a step with no record
            # at all is not computed from other values (the input, a parameter, upstream.delta)
            result.origin = self._origin(step)
            return result
        expansion = step.expansions.get(index)
        if expansion is None:
            # asked for, yet no term reached it (a cell that won no max-pool window)
            expansion = Expansion("sum")
        result.kind = expansion.kind
        if expansion.kind == "sum":
            # whole 0 and 1 to start from, so that fractions stay fractions
            running = 0
            for factors in expansion.terms:
                operands = tuple(self.operand(f, step) for f in factors)
                product = 1
                for operand in operands:
                    product *= operand.value
                running += product
                result.terms.append(Term(operands, product, running))
        elif expansion.kind == "max":
            result.candidates = [self.operand(factors[0], step) for factors in expansion.terms]
            result.winner, result.tie = expansion.winner, expansion.tie
        elif expansion.kind == "apply":
            result.fn = expansion.fn
            result.argument = self.operand(expansion.terms[0][0], step)
        if step.parts:
            result.contributions = [Contribution(part.layer, part.rule, float(part.values[index]))
                                    for part in step.parts]
        role_layer = _delta_below(self.scenario, name)
        extra = self.IN_DELTA_VIEWS.get(role_layer.type) if role_layer is not None else None
        if extra:
            extra(self, result, role_layer, index)
        return result

    # The error at a layer's input seen the way each layer type is taught: max-pool
    # routing, the average's share, the full convolution, the row of Wᵀ.
    def _max_view(self, result, layer, index):
        result.windows = self._windows(layer, index)

    def _average_view(self, result, layer, index):
        if layer.uniform:
            result.share = f"1/{layer.size[0] * layer.size[1]}"
        else:
            counted = "inside the input and its padding" if layer.count_include_pad else "inside the input"
            result.share, result.share_reason = "1/(its cell count)", f"the window's cells {counted}"

    def _convolution_view(self, result, layer, index):
        result.full_conv = self._full_convolution(layer, index, result.total)

    def _dense_view(self, result, layer, index):
        result.dense_row = self._dense_row(layer, index)

    IN_DELTA_VIEWS = {"maxpool": _max_view, "avgpool": _average_view, "conv": _convolution_view,
                      "dense": _dense_view, "global_maxpool": _max_view, "global_avgpool": _average_view}

    def _origin(self, step) -> str:
        """Where an input or parameter came from (recorded by the engine), else the rule."""
        return step.origin or step.rule

    # max-pool: the windows around a cell ------------------------------------------------

    def _windows(self, layer, index) -> list:
        out_name, delta_name = f"{layer.name}.out", f"{layer.name}.delta"
        out_step, delta_step = self.trace[out_name], self.trace[delta_name]
        windows = []
        n, c, h, w = index
        for at in _windows_containing(layer, index):
            expansion = out_step.expansions[at]
            cells = [self.operand(factors[0], out_step) for factors in expansion.terms]
            positions = [f.index for (f,) in expansion.terms]
            windows.append(Window(
                output=Operand(self.label(out_name, at), out_name, self.written(out_name, at),
                               float(out_step.values[at])),
                cells=cells, winner=expansion.winner, tie=expansion.tie, mine=positions.index((n, c, h, w)),
                delta=Operand(self.label(delta_name, at), delta_name, self.written(delta_name, at),
                              float(delta_step.values[at]))))
        return windows

    # dense: the row of Wᵀ -----------------------------------------------------------------

    def _dense_row(self, layer, index) -> DenseRow:
        n, k = index
        weights_name, delta_name = f"{layer.name}.weights", f"{layer.name}.delta"
        weights, delta = self.trace.value(weights_name), self.trace.value(delta_name)
        return DenseRow(
            input=k + self.base, outputs=[o + self.base for o in range(weights.shape[0])],
            weights=[Operand(self.label(weights_name, (o, k)), weights_name, self.written(weights_name, (o, k)),
                             float(weights[o, k])) for o in range(weights.shape[0])],
            deltas=[Operand(self.label(delta_name, (n, o)), delta_name, self.written(delta_name, (n, o)),
                            float(delta[n, o])) for o in range(weights.shape[0])])

    # conv: the full convolution, computed on its own ------------------------------------

    def _full_convolution(self, layer, index, direct: float) -> FullConvolution:
        """input.delta[n,c,h,w] = Σ_o Σ_u' Σ_v' P[o, h+d·u', w+d·v'] · K'[o, c, u', v'],

        where K' is the kernel the forward pass slid over the input (as written under the
        correlation convention, turned under the convolution convention), turned by 180°,
        and P is the delta with s−1 zeros put between its rows (and columns) for stride s,
        then d·(kh−1)−p zeros before it for padding p and dilation d: P[o, r, q] =
        delta[o, i, j] when r = i·s + d·(kh−1)−p and q = j·s + d·(kw−1)−p.  With dilation d
        the turned kernel is the dilated one (d−1 zeros between its taps): the window spans
        d·(k−1)+1 cells of P, of which every d-th meets a tap (the dilated full convolution)."""
        n, c, h, w = index
        delta_name, kernel_name = f"{layer.name}.delta", f"{layer.name}.kernel"
        delta, kernel = self.trace.value(delta_name), self.trace.value(kernel_name)
        out_channels, in_per_group, kh, kw = kernel.shape
        _, _, H, W = layer.in_shape
        _, _, Ho, Wo = layer.out_shape
        (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
        span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        out_per_group = out_channels // layer.groups
        group, ck = divmod(c, in_per_group)
        # the kernel as the forward pass applied it (tap (u,v) reads x[i·s+d·u−p, j·s+d·v−p])
        applied = kernel[:, :, ::-1, ::-1] if layer.flip else kernel
        turned = applied[:, :, ::-1, ::-1]
        before = (span[0] - 1 - ph, span[1] - 1 - pw)
        padded_maps, channels = [], []
        total = 0.0
        for o in range(group * out_per_group, (group + 1) * out_per_group):
            padded = np.zeros((H + span[0] - 1, W + span[1] - 1))
            for i, j in np.ndindex(Ho, Wo):
                r, q = i * sh + before[0], j * sw + before[1]
                if 0 <= r < padded.shape[0] and 0 <= q < padded.shape[1]:
                    padded[r, q] = delta[n, o, i, j]
            # the cells of P under the turned kernel's taps: d apart
            patch = padded[h:h + span[0]:dh, w:w + span[1]:dw]
            rotated = turned[o, ck]
            products = patch * rotated
            # each turned-kernel cell: which element of the written kernel it is
            indices = []
            for a in range(kh):
                row = []
                for b in range(kw):
                    u, v = kh - 1 - a, kw - 1 - b          # the applied tap this turned cell came from
                    if layer.flip:
                        u, v = kh - 1 - u, kw - 1 - v      # ... and the written cell that tap used
                    row.append(self.written(kernel_name, (o, ck, u, v)))
                indices.append(row)
            part = float(products.sum())
            total += part
            channels.append(ChannelPatch(
                delta_name=self._map_label(delta_name, (n, o)), rows=(h + self.base, h + span[0] - 1 + self.base),
                cols=(w + self.base, w + span[1] - 1 + self.base),
                patch=patch.copy(), kernel=rotated.copy(), kernel_indices=indices, products=products, total=part))
            padded_maps.append(padded)
        agree = abs(total - direct) <= AGREE_ATOL + AGREE_RTOL * max(abs(total), abs(direct))
        return FullConvolution(
            kernel=kernel_name,
            flipped_from=("the kernel as written (the convolution convention already turned it once "
                          "in the forward pass)") if layer.flip else "the kernel turned by 180°",
            stride=(sh, sw), pad_before=before, padded=padded_maps, index_base=self.base, channels=channels,
            total=total, direct=direct, agree=agree, dilation=(dh, dw))

    def _map_label(self, name: str, leading: tuple) -> str:
        """`c1.delta[2]` for map 2 of a layer with several maps; `c1.delta` for one map."""
        shape = self.trace[name].shape
        return name + format_index(display_index(shape[:len(leading)], leading, self.base))
