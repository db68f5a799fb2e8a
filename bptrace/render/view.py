"""The one view of a trace that every renderer reads: the terminal, Markdown, LaTeX and HTML.

`trace_view(trace, only, digits)` decides once what is shown and in which words: the heading,
a legend, the network summary, sections by phase, per step its header, rule, notes, its
numbers as formatted grids (`layout`), the max-pool windows and their winners, what rounding
or `given` replaced, each written-out sum as structured terms, a pointer to `explain` where
sums are not written out, and at the end the results.  Renderers only mark these pieces up in
their syntax; none of them decides what to show or formats a number.  Nothing here computes a
value: every number is one the trace holds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..engine import EXPAND_ELEMENTS
from ..notation import Ref, eq, partial, prod, seq, sub, sym
from ..tensors import display_index, squeezed_shape
from ..trace import Factor
from .common import (
    AXES, axis_names, element, factor_label, number, product_text, shape_text, signed, sum_pieces,
    trace_factors, type_text,
)
from .layout import DEFAULT_DIGITS, EXACT_FORMAT, Grid, TableFormat, grids, table_format

TERMS_PER_SUM = 24     # a written-out sum with more (non-zero) terms than this is not written
TERMS_PER_STEP = 320   # nor are a step's sums when together they have more terms than this
HEAT_LIMIT = 64         # a value with more numbers is also drawn as a heatmap (HTML, LaTeX)
LIST_LIMIT = 16        # up to this many replaced elements are listed one by one, else a table
RESULT_LIMIT = 200      # a result with more numbers is named with its largest, not tabled
PHASES = {"input": "forward", "parameter": "forward", "forward": "forward",
          "loss": "loss", "backward": "backward", "update": "update"}
PHASE_NAMES = ("forward", "loss", "backward", "gradients", "updates")
LEGEND = seq(eq(Ref("L.delta"), partial(Ref("loss"), Ref("L.out"))), " · ",
             eq(Ref("L.grad.P"), partial(Ref("loss"), Ref("L.P"))))
UPDATE_LEGEND = seq(" · ", eq(Ref("L.new.P"), sub(Ref("L.P"), prod(sym("η"), Ref("L.grad.P"), spaced=False))))
OPTIMIZER_LEGEND = seq(" · ", eq(Ref("L.new.P"), seq(Ref("L.P"), " after the update")))


@dataclass
class Values:
    """A tensor's numbers as a person reads them: formatted cells cut into 2-D grids."""
    name: str
    shape: tuple                     # canonical
    numbers: list                    # flat floats, canonical order
    texts: list                      # flat formatted cells
    format: TableFormat
    grids: list                      # layout.Grid
    caption: str                     # "rows: output unit · columns: input", or ""
    marks: dict = field(default_factory=dict)    # flat position → "*" (given) or "★" (winner)
    kinds: dict = field(default_factory=dict)    # flat position → "given", "winner" or "zero"
    zero_dot: bool = False           # zeros are written "·" (a sparse delta)
    base: int = 0

    @property
    def largest(self) -> float:
        """The largest magnitude, which a heatmap's strongest colour stands for."""
        # float(): a formula (`arithmetic: symbolic`) counts by its value, none when unbound
        return max((abs(f) for f in map(float, self.numbers) if f == f), default=0.0)

    def index(self, flat: int) -> tuple:
        return tuple(int(i) for i in np.unravel_index(flat, self.shape))

    def label(self, flat: int) -> str:
        return element(self.name, self.shape, self.index(flat), self.base)


@dataclass
class Term:
    """One factor of a written-out term, with where it comes from (for links)."""
    text: str                        # as written in the sum
    source: str | None               # "c1.kernel[0,1]" when it is a traced element


@dataclass
class SumView:
    """One element written out: `label = body = total tail`."""
    label: str
    index: tuple                     # canonical
    kind: str                        # "sum", "copy", "max", "apply"
    products: list                   # sum: [(negative, [factor texts])]; max: candidate texts;
    #                                  apply: [argument text]; copy: [the source's label]
    sources: list                    # per product (sum) or candidate (max): [source labels]
    total: str
    fn: str | None = None
    winner: int | None = None
    winner_label: str | None = None
    tie: bool = False
    used: str | None = None          # what later steps use, when rounding or `given` replaced it
    why: str | None = None           # "given" or "rounded"
    zero_terms: int = 0              # terms with a zero factor, left out
    padding_terms: int = 0           # taps on zero padding, which read nothing
    zero_noted: bool = False         # the zero terms are counted once, under the step
    named: str | None = None         # the sum with each factor's element: `c1.kernel[0,0]·input[0,0] + …`


@dataclass
class StepView:
    name: str
    phase: str                       # forward, loss, backward, update
    section: str                     # the phase's title
    layer: str | None
    layer_type: str
    shape: tuple
    shape_text: str                  # "4×4", "" for one number
    scalar: str | None               # the value of a one-number step
    rule: str | None                 # None for the input and parameters (written, not computed)
    origin: str | None
    notes: list                      # [(kind, text)]: kind "rounded", "given", "note"
    values: Values | None
    reads: tuple = ()
    windows: list | None = None      # max-pool: [(output flat, [source flats], winner position)]
    window_source: Values | None = None   # max-pool forward: its input, winners starred
    replaced: list | None = None     # [(label, computed, used, why)] listed one by one
    computed: Values | None = None   # ... or the computed values as a table
    same_as_computed: bool = False   # rounding or given left every value as computed
    sums: list = field(default_factory=list)
    sum_notes: list = field(default_factory=list)
    explain: str | None = None       # the explain command for one element of this step
    notation: object = None          # the rule as notation (bptrace.notation), for LaTeX and HTML


@dataclass
class Result:
    name: str
    what: str                        # "gradient of c1.kernel", "c1.kernel after the update"
    scalar: str | None
    values: Values | None            # small results in full
    largest: str | None = None       # big results: "largest magnitude 0.0485 at C2.grad.kernel[4,2,1,5]"


@dataclass
class TraceView:
    title: str
    description: str
    conventions: str
    start: str
    legend: str
    summary: list                    # [(layer, type, output, params)]
    total_params: int
    sections: list                   # [(title, [StepView])]
    loss: str | None
    results: list                    # [Result]
    explain: str | None              # the explain command for one result
    digits: int
    base: int
    legend_rule: object = None       # the legend as notation (LaTeX typesets it)


def legend(trace):
    """The legend as notation: what .delta and .grad mean, and plain SGD's rule (another
    optimizer's rule is its step's own)."""
    return seq(LEGEND, _update_legend(trace))


def _update_legend(trace):
    if not any(s.phase == "update" for s in trace.steps):
        return ""
    return UPDATE_LEGEND if getattr(trace, "update", "") in ("", "one SGD step") else OPTIMIZER_LEGEND


def conventions_text(trace) -> str:
    c = trace.conventions
    arithmetic = getattr(trace, "arithmetic", "float")
    exact = "" if arithmetic == "float" else f" · {arithmetic} arithmetic"
    return f"kernel={c['kernel']} · flatten={c['flatten']} · indices from {c['index_base']}{exact}"


def section_title(phase: str, trace, training_step: int | None = None) -> str:
    """The phase's title; a scenario that trains several steps has each phase once per
    training step ("training step 2 · backward, from the loss, mse")."""
    if phase == "backward" and trace.start:
        title = f"backward, {trace.start}"
    elif phase == "update":
        update = getattr(trace, "update", "")
        title = "update (one SGD step)" if update in ("", "one SGD step") else f"update, {update}"
    else:
        title = phase
    return f"training step {training_step} · {title}" if training_step else title


def explain_command(trace, label: str) -> str:
    path = getattr(getattr(trace, "scenario", None), "path", None)
    return f"bptrace explain {_quoted(str(path)) if path else 'SCENARIO'} '{label}'"


def _quoted(path: str) -> str:
    return path if all(c.isalnum() or c in "._/-+" for c in path) else "'" + path.replace("'", "'\\''") + "'"


# --- the whole trace ---------------------------------------------------------------------

def trace_view(trace, only=None, digits: int = DEFAULT_DIGITS, steps: bool = True) -> TraceView:
    """The view of `trace` (only the steps named in `only`, when given; no steps at all with
    `steps=False`, for `--summary`)."""
    base = trace.conventions.get("index_base", 0)
    types = {row.layer: row.type for row in trace.summary}
    sections = []
    if steps:
        for step in trace.steps:
            if only is not None and step.name not in only:
                continue
            view = step_view(step, trace, digits, types)
            if not sections or sections[-1][0] != view.section:
                sections.append((view.section, []))
            sections[-1][1].append(view)
    results, hint = _results(trace, only, digits, types)
    loss = trace["loss"] if "loss" in trace else None
    return TraceView(
        title=trace.name, description=" ".join((trace.description or "").split()),
        conventions=conventions_text(trace), start=trace.start or "",
        legend=str(legend(trace)), legend_rule=legend(trace),
        summary=[(row.layer, type_text(row), shape_text(row.out_shape), str(row.params) if row.type else "")
                 for row in trace.summary],
        total_params=trace.total_params, sections=sections,
        loss=signed(paper(loss).reshape(-1)[0], digits) if loss is not None else None,
        results=results, explain=hint, digits=digits, base=base)


def _results(trace, only, digits, types):
    """The loss, then per parameter its gradient and its update; or, with `only`, the
    asked-for steps.  Returns (results, the explain command for one of them)."""
    if only is not None:
        names = [s.name for s in trace.steps if s.name in only and s.name != "loss"]
    else:
        names = []
        for step in trace.steps:
            if step.phase != "parameter":
                continue
            layer, role = step.name.split(".", 1)
            names += [n for n in (f"{layer}.grad.{role}", f"{layer}.new.{role}") if n in trace]
    results, hint = [], None
    base = trace.conventions.get("index_base", 0)
    inputs = {s.name for s in trace.steps if s.phase == "input"}
    for name in names:
        step = trace[name]
        what = _what(name, step.phase, inputs)
        if step.values.size == 1:
            results.append(Result(name, what, signed(paper(step).reshape(-1)[0], digits), None))
        elif step.values.size <= RESULT_LIMIT:
            results.append(Result(name, what, None, values_of(step, trace, digits, types.get(step.layer, ""))))
        else:
            flat = int(np.argmax(np.abs(step.values)))
            index = tuple(int(i) for i in np.unravel_index(flat, step.shape))
            results.append(Result(name, what, None, None,
                                  f"{shape_text(step.shape)}, largest magnitude "
                                  f"{signed(paper(step)[index], digits)} at {element(name, step.shape, index, base)}"))
        if hint is None and ".grad." in name:
            flat = int(np.argmax(np.abs(step.values)))
            index = tuple(int(i) for i in np.unravel_index(flat, step.shape))
            hint = explain_command(trace, element(name, step.shape, index, base))
    return results, hint


def _what(name: str, phase: str = "", inputs=()) -> str:
    """What a result is, in a few words; `inputs`: the trace's input names (they have no `.out`)."""
    prefix = re.match(r"step\d+\.", name)
    if prefix:                                      # `steps:`: step2.c1.grad.kernel
        name = name[prefix.end():]
        inputs = {n[prefix.end():] for n in inputs if n.startswith(prefix.group())}
    layer, _, rest = name.partition(".")
    if phase == "parameter" and prefix and prefix.group() != "step1.":
        return f"as step {int(prefix.group()[4:-1]) - 1}'s update left it"
    if phase in ("parameter", "input"):
        return "as written"
    if rest.startswith("state."):                   # d.state.weights.momentum_buffer
        return f"optimizer state of {layer}.{rest.split('.')[1]}"
    if rest.startswith("grad."):
        return f"gradient of {layer}.{rest[5:]}"
    if rest.startswith("new."):
        return f"{layer}.{rest[4:]} after the update"
    if rest == "delta":
        return f"∂loss/∂{layer}" if layer in inputs else f"∂loss/∂{layer}.out"
    if rest.endswith(".delta"):                     # an inner value's: r.h.delta, bn.mean.delta
        return f"∂loss/∂{name[:-len('.delta')]}"
    if rest.startswith("local."):                   # an expression node's edge
        return f"∂{layer}/∂{rest[len('local.'):]}, a local gradient"
    if rest == "out":
        return f"{layer}'s output"
    return f"computed by {layer}" if rest else ""


# --- one step ------------------------------------------------------------------------------

def paper(step):
    """The values as shown: exact ones where the trace has them (`arithmetic: exact`)."""
    return step.exact if step.exact is not None else step.values


def values_of(step, trace, digits, layer_type="", values=None, marks=True) -> Values:
    """A step's values (or `values`, e.g. the computed ones) as formatted grids."""
    values = paper(step) if values is None else values
    base = trace.conventions.get("index_base", 0)
    flat = values.reshape(-1).tolist()
    fmt = EXACT_FORMAT if values.dtype == object else table_format(flat, digits)
    texts = [fmt.text(v) for v in flat]
    grid_list, caption = grids(values.shape, axis_names(step.name, step.shape, layer_type), base)
    view = Values(step.name, tuple(values.shape), flat, texts, fmt, grid_list, caption, base=base)
    if marks and step.given is not None:
        for k, pinned in enumerate(step.given.reshape(-1).tolist()):
            if pinned:
                view.marks[k], view.kinds[k] = "*", "given"
    if marks and step.name.endswith(".delta") and 0.0 in flat:
        view.zero_dot = True
        for k, v in enumerate(flat):
            if v == 0:
                texts[k] = "·"
                view.kinds.setdefault(k, "zero")
    return view


def step_view(step, trace, digits: int = DEFAULT_DIGITS, types=None) -> StepView:
    types = types if types is not None else {row.layer: row.type for row in trace.summary}
    base = trace.conventions.get("index_base", 0)
    layer_type = types.get(step.layer, "")
    phase = PHASES[step.phase]
    shown = squeezed_shape(step.shape)
    view = StepView(
        name=step.name, phase=phase, section=section_title(phase, trace, getattr(step, "training_step", None)), layer=step.layer,
        layer_type=layer_type, shape=step.shape, shape_text="×".join(str(d) for d in shown),
        scalar=signed(paper(step).reshape(-1)[0], digits) if not shown else None,
        rule=step.rule if step.phase not in ("input", "parameter") else None,
        notation=(step.notation or step.rule) if step.phase not in ("input", "parameter") else None,
        origin=step.origin, notes=_notes(step, trace), reads=tuple(step.reads),
        values=values_of(step, trace, digits, layer_type) if shown else None)
    _windows(view, step, trace, digits, types)
    fmt = view.values.format if view.values is not None else None
    view.sums, view.sum_notes = _sums(step, trace, digits, base, layer_type, fmt)
    if step.expansions and not view.sums and step.values.size:
        view.explain = explain_command(trace, element(step.name, step.shape, (0,) * len(step.shape), base))
        if view.sum_notes:
            view.sum_notes[-1] += f"; see any element's terms: {view.explain}"
    elif not step.expansions and step.phase not in ("input", "parameter") and step.values.size > EXPAND_ELEMENTS:
        view.explain = explain_command(trace, element(step.name, step.shape, (0,) * len(step.shape), base))
        view.sum_notes.append(f"sums not written out ({step.values.size} elements); "
                              f"see any element's terms: {view.explain}")
    _replaced(view, step, trace, digits, layer_type)
    return view


def _notes(step, trace) -> list:
    notes = []
    warnings = getattr(getattr(trace, "scenario", None), "warnings", None) or {}
    if step.layer in warnings and step.name == f"{step.layer}.out":
        notes.append(("note", f"warning: {warnings[step.layer]}"))
    if step.rounded:
        notes.append(("rounded", f"rounded: {step.rounded}; later steps use the rounded values"))
    if step.given is not None:
        count, total = int(step.given.sum()), step.given.size
        which = "the value" if total == 1 else f"all {total} values" if count == total else f"{count} of {total} values"
        notes.append(("given", f"given: {which} pinned by the scenario (*); later steps use "
                               f"{'it' if total == 1 else 'these'}, not the computed {'one' if total == 1 else 'ones'}"))
    notes += [("note", f"note: {note}") for note in step.notes]
    return notes


def _windows(view, step, trace, digits, types):
    """A max-pool's windows (each output's candidates and winner) on its forward step, and on
    the delta it routes back (the same windows, read from the forward step)."""
    forward = step
    if view.layer_type != "maxpool":
        return
    if step.phase == "backward":
        # the pool's input delta: its windows are those of the pool's forward step
        pool_out = f"{step.layer}.out"
        if pool_out not in trace or step.name == f"{step.layer}.delta":
            return
        forward = trace[pool_out]
    elif step.phase != "forward":
        return
    if not forward.expansions:
        return
    windows, source = [], None
    for index, expansion in sorted(forward.expansions.items()):
        if expansion.kind != "max" or expansion.winner is None:
            return
        names = {f.name for (f,) in expansion.terms}
        if len(names) != 1 or any(f.index is None for (f,) in expansion.terms):
            return
        source = names.pop()
        if source not in trace:
            return
        shape = trace[source].shape
        windows.append((int(np.ravel_multi_index(index, forward.shape)),
                        [int(np.ravel_multi_index(f.index, shape)) for (f,) in expansion.terms], expansion.winner))
    view.windows = windows
    if step.phase == "forward":
        src = trace[source]
        shown = values_of(src, trace, digits, types.get(src.layer, ""), marks=False)
        for _, cells, winner in windows:
            shown.marks[cells[winner]] = "★"
            shown.kinds[cells[winner]] = "winner"
        view.window_source = shown


def _zero(term) -> bool:
    return any(f.value == 0 for f in term)


def _sums(step, trace, digits, base, layer_type, fmt):
    if not step.expansions:
        return [], []
    kinds = {e.kind for e in step.expansions.values()}
    if kinds == {"sum"}:
        counts = [sum(1 for t in e.terms if not _zero(t)) for e in step.expansions.values()]
        if max(counts) > TERMS_PER_SUM or sum(counts) > TERMS_PER_STEP:
            longest = max(len(e.terms) for e in step.expansions.values())
            return [], [f"the sums are not written out: up to {longest} terms each, too many to read"]
    taps = _taps(step, trace, layer_type)
    used, computed = paper(step), step.computed if step.computed is not None else paper(step)
    # a total reads as its table cell, unless the table is written in multiples of 10^k
    total = fmt.text if fmt is not None and not fmt.exponent else (lambda v: signed(v, digits))
    sums, zero_elements, derivations = [], [], []
    for index, expansion in sorted(step.expansions.items()):
        label = element(step.name, step.shape, index, base)
        item = SumView(label, index, expansion.kind, [], [], total(computed[index]))
        if step.computed is not None and used[index] != computed[index]:
            item.used = total(used[index])
            item.why = "given" if step.given is not None and step.given[index] else "rounded"
        if expansion.kind == "apply":
            factor = expansion.terms[0][0]
            item.fn, item.products = expansion.fn, [signed(factor.value, digits)]
            item.sources = [[_source(factor, trace, step, base)]]
            if expansion.fn == "softmax":
                item.named = _softmax(factor, trace, digits)
        elif expansion.kind == "max":
            item.products = [signed(f.value, digits) for (f,) in expansion.terms]
            item.sources = [[_source(f, trace, step, base)] for (f,) in expansion.terms]
            item.winner, item.tie = expansion.winner, expansion.tie
            item.winner_label = factor_label(expansion.terms[expansion.winner][0], trace, step, base)
        else:
            terms = [t for t in expansion.terms if not _zero(t)]
            item.zero_terms = len(expansion.terms) - len(terms)
            if taps:
                item.padding_terms = max(0, taps - len(expansion.terms))
            if not terms:
                zero_elements.append(label)
                continue
            if len(terms) == 1 and len(terms[0]) == 1 and terms[0][0].index is not None:
                difference = _difference(terms[0][0], trace, digits)
                item.kind = "copy" if difference is None else "sum"
                item.products = [factor_label(terms[0][0], trace, step, base)] if difference is None \
                    else [(False, [difference[1:-1]])]
                item.sources = [[_source(terms[0][0], trace, step, base)]]
            else:
                item.products = [_product(t, trace, digits) for t in terms]
                item.sources = [[_source(f, trace, step, base) for f in t] for t in terms]
                traced = all(f.index is None or _source(f, trace, step, base) for t in terms for f in t)
                if traced and (not sums or step.parts):
                    # the first sum of a step (and each sum of a delta summed over several
                    # readers) also says which element each factor is
                    item.named = " + ".join("·".join(_source(f, trace, step, base) or f.name for f in t)
                                            for t in terms)
                for t in terms:
                    for f in t:
                        derived = _softmax_of(f, trace, step, base, digits)
                        if derived and derived not in derivations:
                            derivations.append(derived)
        sums.append(item)
    notes = []
    skips = {(s.zero_terms, s.zero_terms + len(s.products)) for s in sums if s.kind == "sum"}
    if any(z for z, _ in skips) and len(skips) == 1 and len(sums) > 0:
        skipped, count = skips.pop()
        notes.append(f"left out of {'each sum' if len(sums) > 1 else 'the sum'}: {skipped} of its "
                     f"{count} terms, which have a zero factor")
        for s in sums:
            s.zero_noted = True                   # counted in the note, not on each line
    elif any(z for z, _ in skips):
        notes.append("(+n zero terms): terms with a zero factor, left out")
    notes += derivations
    if any(s.padding_terms for s in sums):
        notes.append("(+n on padding): taps of the kernel on the zero padding, which add nothing")
    if zero_elements:
        count = len(zero_elements)
        if count <= 4:
            notes.append(f"{', '.join(zero_elements)} = 0: every term has a zero factor")
        else:
            notes.append(f"{'the other' if sums else 'all'} {count} elements are 0: every term of "
                         "their sums has a zero factor")
    return sums, notes


def _difference(factor, trace, digits) -> str | None:
    """A loss factor `h.out − target` at an index as the numbers it stands for: `(0.4177 − 1)`,
    when the trace knows its scenario's target (None otherwise)."""
    name = factor.name
    target = getattr(getattr(getattr(trace, "scenario", None), "loss", None), "target", None)
    if not name.endswith(" − target") or factor.index is None or target is None:
        return None
    out = name[:-len(" − target")].strip("()")
    if out not in trace:
        return None
    try:
        out_value, target_value = trace[out].values[factor.index], np.asarray(target)[factor.index]
    except (IndexError, TypeError):
        return None
    if np.isnan(out_value):
        # letters without values (`arithmetic: symbolic`): the factor's formula says it
        return None
    return f"({signed(out_value, digits)} − {signed(target_value, digits)})"


def _product(term, trace, digits):
    """(negative, factor texts) of a term; the loss's `(out − target)·(out − target)` is written
    as the numbers it squares, `(0.4177 − 1)²`, as on paper."""
    differences = [_difference(f, trace, digits) for f in term]
    if not any(differences):
        return product_text(trace_factors(term), digits)
    texts, k = [], 0
    constants = [(f.value, f.name) for f, d in zip(term, differences) if d is None]
    negative, texts = product_text(constants, digits) if constants else (False, [])
    shown = [d for d in differences if d]
    while k < len(shown):
        if k + 1 < len(shown) and shown[k + 1] == shown[k]:
            texts.append(shown[k] + "²")
            k += 2
        else:
            texts.append(shown[k])
            k += 1
    return negative, texts


def _softmax(factor, trace, digits) -> str | None:
    """`e^0.3 / (e^0.3 + e^−0.2)`: a softmax output from the scores it normalises (the features
    of a sample, or the channels at a position of a map), when there are at most six."""
    if factor.index is None or factor.name not in trace:
        return None
    values = trace[factor.name].values
    index = factor.index
    if values.ndim == 2:
        group = [(index[0], k) for k in range(values.shape[1])]
    elif values.ndim == 4:
        group = [(index[0], c, index[2], index[3]) for c in range(values.shape[1])]
    else:
        return None
    if len(group) > 6 or any(np.isnan(values[g]) for g in group):
        # letters without values (`arithmetic: symbolic`): their formula is the derivation
        return None
    power = lambda v: f"e^{signed(v, digits)}"        # noqa: E731
    return f"{power(values[index])} / ({' + '.join(power(values[g]) for g in group)})"


def _softmax_of(factor, trace, step, base, digits) -> str | None:
    """`softmax(h.out)[0] = e^0.571 / (e^0.571 + e^−0.127)`: where a loss's softmax factor
    comes from (its value is in the sum itself)."""
    for head, form in (("log softmax(", "log({})"), ("softmax(", "{}")):
        if factor.name.startswith(head) and factor.name.endswith(")") and factor.index is not None:
            inner = factor.name[len(head):-1]
            if inner not in trace:
                return None
            derivation = _softmax(Factor(inner, factor.index, 0.0), trace, digits)
            label = element(factor.name, trace[inner].shape, factor.index, base)
            return f"{label} = {form.format(derivation)}" if derivation else None
    return None


def _taps(step, trace, layer_type) -> int:
    """How many terms a conv output's sum has when no tap falls on padding: the filter's
    kernel elements and the bias (0 for any other step)."""
    if layer_type != "conv" or step.name != f"{step.layer}.out" or f"{step.layer}.kernel" not in trace:
        return 0
    kernel = trace[f"{step.layer}.kernel"].shape
    return int(np.prod(kernel[1:])) + (1 if f"{step.layer}.bias" in trace else 0)


def _source(factor, trace, step, base) -> str | None:
    """The traced element a factor is, for links; None for a constant or a derived value."""
    if factor.index is None or factor.name not in trace:
        return None
    return element(factor.name, trace[factor.name].shape, factor.index, base)


def _replaced(view, step, trace, digits, layer_type):
    """Computed vs used values of a step that rounding or `given` changed (those whose sums
    are written out say it there)."""
    if step.computed is None:
        return
    used, computed = step.values, step.computed
    base = trace.conventions.get("index_base", 0)
    changed = [index for index in np.ndindex(*step.shape) if used[index] != computed[index]]
    if not changed:
        view.same_as_computed = True
        return
    explained = {s.index for s in view.sums}
    changed = [index for index in changed if index not in explained]
    if not changed:
        return
    if len(changed) <= LIST_LIMIT:
        view.replaced = [(element(step.name, step.shape, index, base), signed(computed[index], digits),
                          signed(used[index], digits),
                          "given" if step.given is not None and step.given[index] else "rounded")
                         for index in changed]
    else:
        view.computed = values_of(step, trace, digits, layer_type, values=computed, marks=False)


# --- words shared by the renderers ------------------------------------------------------------

def zero_note(item: SumView) -> str:
    """`+2 zero terms`, `+5 on padding`, for the end of a sum line."""
    parts = []
    if item.zero_terms and not item.zero_noted:
        parts.append(f"+{item.zero_terms} zero term{'s' * (item.zero_terms != 1)}")
    if item.padding_terms:
        parts.append(f"+{item.padding_terms} on padding")
    return ", ".join(parts)


def plain_line(item) -> str:
    """A `view.SumView` in plain Unicode: `label = 0.61·0.25 + 0.02·(−0.15) = 0.1495`."""
    if item.kind == "max":
        body = "max(" + ", ".join(t + ("★" if k == item.winner else "") for k, t in enumerate(item.products)) + ")"
    elif item.kind == "apply":
        body = f"{item.fn}({item.products[0]})" + (f" = {item.named}" if item.named else "")
    elif item.kind == "copy":
        body = item.products[0]
    else:
        body = (f"{item.named} = " if item.named else "") + "".join(sum_pieces(item.products))
    text = f"{item.label} = {body} = {item.total}"
    if item.kind == "max":
        text += f", from {item.winner_label}" + (" (a tie: the first maximum wins)" if item.tie else "")
    if item.used is not None:
        text += f" → {item.used} {item.why}"
    note = zero_note(item)
    return text + (f"   ({note})" if note else "")



def display(values: Values, flat: int) -> tuple:
    """The written index of a flat position."""
    return display_index(values.shape, values.index(flat), values.base)


__all__ = ["AXES", "Grid", "LEGEND", "PHASE_NAMES", "Result", "StepView", "SumView", "TraceView", "Values",
           "explain_command", "number", "step_view", "trace_view", "values_of", "zero_note"]


# --- choosing steps: `--only` and `only=` ------------------------------------------------------

PHASE_SELECTORS = {
    "forward": lambda step: PHASES[step.phase] == "forward",
    "loss": lambda step: step.phase == "loss",
    "backward": lambda step: step.phase == "backward",
    "deltas": lambda step: step.name.endswith(".delta"),
    "gradients": lambda step: ".grad." in step.name,
    "updates": lambda step: step.phase == "update",
}


def matches(step, pattern: str) -> bool:
    """`--only` PATTERN: a phase (`forward`, `loss`, `backward`, `deltas`, `gradients`,
    `updates`), a name, a name prefix ending at a dot (`C1.grad` takes `C1.grad.kernel` and
    `C1.grad.bias`; `c1` takes every step of c1) or a shell pattern (`'c1.*'`)."""
    import fnmatch

    if pattern in PHASE_SELECTORS and pattern not in {s for s in (step.name,)}:
        return PHASE_SELECTORS[pattern](step)
    return (step.name == pattern or step.name.startswith(pattern + ".")
            or fnmatch.fnmatchcase(step.name, pattern))


def select(trace, patterns) -> tuple[set, list]:
    """(the names `patterns` choose, the patterns that choose nothing)."""
    chosen, missing = set(), []
    for pattern in patterns:
        found = {step.name for step in trace.steps if matches(step, pattern)}
        if not found:
            missing.append(pattern)
        chosen |= found
    return chosen, missing


def listing(trace) -> list:
    """`run --list`: (name, phase, shape) of every step, in order."""
    return [(step.name, PHASES[step.phase] if ".grad." not in step.name else "gradients",
             shape_text(step.shape)) for step in trace.steps]
