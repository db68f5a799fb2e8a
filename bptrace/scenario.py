"""A scenario file, read and checked: the one place that turns YAML into a `Scenario`.

Everything is validated here, before the engine runs, and every mistake raises a
`ScenarioError` that names the file, line and key.  What BRIEF section 1 leaves open is
decided here and written down in the README ("Scenario format").
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ScenarioError, did_you_mean, plain_text, suggest
from .layers import LAYERS, MAX_TENSOR_ELEMENTS, BuildContext, Layer, Names
from .losses import LOSS_DATA, LOSS_L2, LOSSES
from .numbers import ARITHMETICS, FLOAT, exact_text, written_fraction
from .numbers import system as numbers_system
from .optim import GIVEN_KEYS, OPTIONS, Optimizer
from .plan import Node, Plan, input_value, layer_value
from .rounding import MODES
from .source import Document, read_document, parse_text
from .spec import Spec, fill_origin, kind_of, read_tensor, shape_error, shape_words
from .tensors import canonical_index, display_index, every, fits, format_index, kept_axes

TOP_KEYS = ("bptrace", "name", "description", "conventions", "input", "inputs", "layers", "output", "upstream",
            "loss", "given", "learning_rate", "rounding", "expected", "init", "tolerance",
            "regularization", "optimizer", "steps", "nodes", "arithmetic", "points", "values")
LOSS_TYPES = tuple(LOSSES)
ROUNDING_MODES = tuple(MODES)
ROUNDING_GROUPS = ("forward", "backward", "all")
FORMAT_VERSIONS = (1,)
ACTIVATIONS = tuple(kind for kind, cls in LAYERS.items() if cls.elementwise or cls.keeps_shape)
MERGES = tuple(kind for kind, cls in LAYERS.items() if cls.merge)
RECURRENT = ("rnn", "lstm", "gru")      # they read sequences: a 2-D input is [T][features]

# Forward + backward scalar operations above which a scenario is refused before it runs:
# the loops run at roughly 3 million operations a second, so this is about ten seconds.
DEFAULT_WORK_LIMIT = 30_000_000
# Rounding by hand keeps a few decimals; past this a float has no digits left to round.
MAX_DECIMALS = 20

_ELEMENT = re.compile(r"^(?P<name>[^\[\]]+?)\s*(?:\[(?P<index>[^\]]*)\])?$")


@dataclass(frozen=True)
class Conventions:
    kernel: str = "correlation"
    flatten: str = "row"
    index_base: int = 0

    def as_dict(self):
        return {"kernel": self.kernel, "flatten": self.flatten, "index_base": self.index_base}


@dataclass
class Loss:
    type: str
    target: np.ndarray | None     # canonical shape of the last layer's output (one-hot for class indices);
                                  # None for `sum` and `mean`, which have none
    classes: list | None = None   # the class indices as written, for cross_entropy

    def function(self):
        """The loss's value and gradient (`LOSSES[type]`); the engine asks here so that the
        checker's catalog of mistakes can hand it a mistaken one without touching the engine."""
        return LOSSES[self.type]()


@dataclass
class Upstream:
    layer: str
    delta: np.ndarray             # canonical shape of that layer's output
    rule: object = None           # an expression graph's output starts from 1: its own rule (notation)
    start: str | None = None


@dataclass
class Rounding:
    decimals: int
    mode: str
    apply: tuple                  # trace names and/or "forward", "backward", "all"

    def describe(self):
        return f"{self.decimals} decimals, {self.mode.replace('_', ' ')}"


@dataclass
class Patch:
    """Values pinned onto a step: a whole tensor, or some elements (mask)."""
    name: str
    values: np.ndarray            # canonical shape of the step
    mask: np.ndarray              # bool, canonical shape


@dataclass(frozen=True)
class Tolerance:
    """`abs`/`rel` both None: "as written".  Otherwise |yours − bptrace| ≤ abs + rel·|bptrace|."""
    abs: float | None = None
    rel: float | None = None

    @property
    def as_written(self) -> bool:
        return self.abs is None and self.rel is None

    def describe(self) -> str:
        if self.as_written:
            return "as written (bptrace's number rounded or truncated to your decimals)"
        return f"|yours − bptrace| ≤ {self.abs:g} + {self.rel:g}·|bptrace|"

    def as_dict(self):
        return "as_written" if self.as_written else {"abs": self.abs, "rel": self.rel}


@dataclass(frozen=True)
class Points:
    """What each answer is worth when graded (`check --format gradescope`): `each` points
    for every answer the sheet gives, or, when `listed` is not empty, exactly the listed
    answers, answered or not: (key as written, name, canonical index or None, points, how
    many numbers it covers)."""
    each: float = 1.0
    listed: tuple = ()


def read_points(scenario: "Scenario", doc: Document, path: tuple, raw) -> Points:
    """`points:` (or `--points`): a number for every answer, or a mapping of answer keys
    (`name` or `name[i,j]`, as under `expected:`) to points."""
    if raw is None:
        return Points()
    hint = "write `points: 2` (each answer) or `points: {p1.delta: 2, 'c1.grad.kernel[0,1]': 1}`"

    def amount(where, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise doc.error(where, f"points must be a number of at least 0, found {value!r}", hint)
        return float(value)

    if not isinstance(raw, dict):
        return Points(each=amount(path, raw))
    if not raw:
        raise doc.error(path, "points is empty", hint)
    listed = []
    for key, value in raw.items():
        name, index = resolve(scenario, doc, path + (key,), str(key))
        size = int(np.prod(scenario.shapes[name])) if index is None else 1
        listed.append((str(key), name, index, amount(path + (key,), value), size))
    for i, (key, name, index, *_) in enumerate(listed):
        for other, other_name, other_index, *_ in listed[:i]:
            if name == other_name and (index is None or other_index is None or index == other_index):
                raise doc.error(path + (key,), f"{key} gives points for numbers {other} already does",
                                "give each number its points once")
    return Points(listed=tuple(listed))


def tolerance_problem(key: str, value: float) -> str | None:
    """Why `value` cannot be a tolerance's `abs` or `rel`, or None.  A relative tolerance of 1
    or more accepts 0 for every number, and a non-finite one makes every comparison a
    NaN or an overflow."""
    if not math.isfinite(value):
        return f"a tolerance must be a finite number, found {value}"
    if value < 0:
        return f"a tolerance cannot be negative, found {value:g}"
    if key == "rel" and value >= 1:
        return f"a relative tolerance must be below 1 (1 would accept 0 for every number), found {value:g}"
    return None


@dataclass
class Scenario:
    name: str
    description: str
    conventions: Conventions
    layers: list
    loss: Loss | None = None
    upstream: Upstream | None = None
    given: dict = field(default_factory=dict)        # name -> Patch
    learning_rate: float | None = None
    rounding: Rounding | None = None
    expected: dict = field(default_factory=dict)     # key as written -> value as written (read by `check`)
    tolerance: "Tolerance" = None                     # for `check`; as written unless the file says
    points: "Points" = None                           # for `check --format gradescope`
    document: Document | None = None
    shapes: dict = field(default_factory=dict)       # every traced name -> canonical shape, in trace order
    plan: Plan | None = None                         # the wiring: what each layer reads
    inputs: dict = field(default_factory=dict)       # input name -> values ("input" alone, or `inputs:`)
    input_origins: dict = field(default_factory=dict)
    # Training (README "Training: losses, optimizers, several steps")
    optimizer: Optimizer | None = None                # `optimizer:`; None with `learning_rate:` alone
    steps: int = 1                                    # training steps on the same data
    regularization: float | None = None               # λ of `regularization: {l2: λ}`
    # `arithmetic:` (or --arithmetic): the number system every loop runs on (numbers.py)
    numbers: object = FLOAT

    @property
    def update(self) -> Optimizer | None:
        """The optimizer the update step runs: `optimizer:`, or plain SGD for `learning_rate:`
        (read here, not at load time, so that the mistake catalog can replace either)."""
        if self.optimizer is not None:
            return self.optimizer
        if self.learning_rate is not None:
            return Optimizer("sgd", {**OPTIONS["sgd"], "lr": self.learning_rate}, shorthand=True)
        return None

    def prefix(self, step: int) -> str:
        """What training step `step` (from 1) puts before every name: "step2." when the
        scenario trains several steps, nothing when it trains one."""
        return f"step{step}." if self.steps > 1 else ""
    warnings: dict = field(default_factory=dict)     # layer name -> what runs but is likely not meant

    @property
    def in_letters(self) -> bool:
        """Symbolic arithmetic with letters in it: its answers are formulas.  Without letters
        (`--arithmetic symbolic` on a scenario in numbers) they are numbers, checked as such."""
        letters = self.document.letters if self.document is not None else None
        return self.numbers.name == "symbolic" and bool(letters is not None and letters.seen)

    @property
    def path(self):
        return self.document.file if self.document else None

    @property
    def input(self) -> np.ndarray:
        """The (first) input's values; `inputs` holds them all by name."""
        return self.inputs[next(iter(self.inputs))]

    @input.setter
    def input(self, values):
        self.inputs[next(iter(self.inputs))] = values

    @property
    def input_origin(self) -> str:
        return self.input_origins[next(iter(self.inputs))]

    def layer(self, name) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    @property
    def output(self) -> Layer:
        """The layer the loss (or the upstream error) applies to."""
        return self.layer(self.plan.output)

    @property
    def active_layers(self) -> list:
        """The layers the backward pass runs through, in forward order: the output layer
        (or `upstream.layer`) and every layer it depends on.  The others run forward only."""
        return [self.layer(node.name) for node in self.plan.active]

    def names(self, layer: Layer, prefix: str = "") -> Names:
        """The traced names `layer`'s steps read and write (in the training step whose
        names start with `prefix`)."""
        reads = self.plan.node(layer.name).reads
        return Names(layer=layer.name, x=prefix + reads[0].out, x_delta=prefix + reads[0].delta,
                     base=self.conventions.index_base, xs=tuple(prefix + v.out for v in reads),
                     x_deltas=tuple(prefix + v.delta for v in reads), prefix=prefix)

    def work(self) -> int:
        return sum(layer.multiply_adds() for layer in self.layers)

    def to_torch(self):
        """The network as a float64 `torch.nn.Sequential` with these parameters (`bptrace[torch]`)."""
        from .pytorch import to_torch

        return to_torch(self)


def load(path, *, work_limit: int | None = DEFAULT_WORK_LIMIT, arithmetic: str | None = None) -> Scenario:
    """Read and validate a scenario file (`arithmetic`: overrides the file's `arithmetic:`)."""
    return from_document(read_document(path), work_limit=work_limit, arithmetic=arithmetic)


def loads(text: str, file: str | None = None, *, work_limit: int | None = DEFAULT_WORK_LIMIT,
          arithmetic: str | None = None) -> Scenario:
    """Read and validate a scenario from text."""
    return from_document(parse_text(text, file), work_limit=work_limit, arithmetic=arithmetic)


def from_document(doc: Document, *, work_limit: int | None = DEFAULT_WORK_LIMIT,
                  arithmetic: str | None = None) -> Scenario:
    top = Spec(doc, (), doc.data, TOP_KEYS, "the scenario")
    arithmetic = arithmetic or top.choice("arithmetic", ARITHMETICS, "float")
    if "bptrace" in top:
        version = top.get("bptrace")
        if isinstance(version, bool) or version not in FORMAT_VERSIONS:
            scalar = isinstance(version, (str, int, float)) and not isinstance(version, bool)
            shown = f"unknown format version '{version}'" if isinstance(version, str) else \
                f"unknown format version {version}" if scalar else \
                f"the format version is a number, found {kind_of(version)}"
            raise top.error("bptrace", shown,
                            "this bptrace reads version " + ", ".join(map(str, FORMAT_VERSIONS)))
    if "input" in top and "inputs" in top:
        raise top.error("inputs", "a scenario has `input:` (one input) or `inputs:` (several, named), not both",
                        "remove one of them")
    graph = "nodes" in top
    if graph:
        from .graph import graph_inputs, graph_nodes, graph_start, graph_top

        graph_top(top)
    for key in ("input", "layers"):
        if key not in top and not (key == "input" and "inputs" in top) and not graph:
            raise top.error(None, f"the scenario has no `{key}:`", "see `bptrace new` for a complete example")
    conventions = _conventions(top)
    _letters(top, arithmetic, conventions)
    layer_specs = None if graph else top.get("layers")
    if not graph and (not isinstance(layer_specs, list) or not layer_specs):
        raise top.error("layers", "expected a list of layers (each `- {type: ...}`), found "
                        + ("an empty list" if layer_specs == [] else kind_of(layer_specs)))
    inputs, origins = graph_inputs(top) if graph else _inputs(top, layer_specs)
    scenario = Scenario(
        name=plain_text(top.text("name", "")) or plain_text(doc.file or "") or "scenario",
        description=plain_text(top.text("description", "") or ""),
        conventions=conventions, layers=[], document=doc, inputs=inputs, input_origins=origins)
    scenario.layers, scenario.plan = graph_nodes(top, inputs, work_limit) if graph else \
        _layers(top, inputs, conventions, work_limit)
    scenario.warnings = _warnings(scenario.layers)
    _output(top, scenario)
    scenario.learning_rate = top.number("learning_rate", positive=True)
    if graph and "loss" not in top and "upstream" not in top:
        graph_start(scenario)
    else:
        _start(top, scenario)
    _training(top, scenario, work_limit)
    scenario.shapes = _shapes(scenario)
    scenario.rounding = _rounding(top, scenario)
    scenario.given = _given(top, scenario)
    scenario.expected = _expected(top, scenario)
    scenario.tolerance = _tolerance(top)
    scenario.points = read_points(scenario, top.doc, ("points",), top.get("points"))
    if arithmetic != "float":
        use_numbers(scenario, numbers_system(arithmetic))
    if doc.letters is not None:
        unused = [name for name in doc.letters.values if name not in doc.letters.seen]
        if unused:
            raise top.error(("values", unused[0]), f"`values:` binds {unused[0]}, which no tensor of the scenario uses",
                            did_you_mean(unused[0], list(doc.letters.seen)))
        unbound = [name for name in doc.letters.seen if name not in doc.letters.values]
        if unbound and scenario.rounding is not None:
            raise top.error("rounding", f"`rounding:` rounds numbers, and {unbound[0]} has no value",
                            "bind every letter with `values:`, or remove `rounding:`")
    return scenario


def _letters(top: Spec, arithmetic: str, conventions: Conventions) -> None:
    """`arithmetic: symbolic`: letters may stand for numbers, and `values:` binds some of them."""
    top.doc.letters = None
    if arithmetic != "symbolic":
        if "values" in top:
            raise top.error("values", "`values:` binds letters to numbers, and letters are read only "
                                      "with `arithmetic: symbolic`")
        return
    from .symbolic import Letters
    from .spec import LETTER

    values = {}
    if "values" in top:
        raw = top.get("values")
        if not isinstance(raw, dict):
            raise top.error("values", f"`values:` maps letters to numbers (values: {{w11: 0.5}}), found {kind_of(raw)}")
        spec = Spec(top.doc, ("values",), raw, None, "values")
        for name in raw:
            if not isinstance(name, str) or not LETTER.match(name):
                raise spec.error(name, f"`{name}` is not a letter (a name such as w11)")
            values[name] = numbers_system("exact").of(spec.number(name))
    top.doc.letters = Letters(values, conventions.index_base)


def use_numbers(scenario: Scenario, num) -> None:
    """The number system chosen once: every number the scenario holds (inputs, parameters,
    targets, the upstream error, pinned values, the layers' constants) becomes one of its
    numbers, read from the decimal as written."""
    scenario.numbers = num
    scenario.inputs = {name: num.tensor(values) for name, values in scenario.inputs.items()}
    for layer in scenario.layers:
        layer.use(num)
    if scenario.loss is not None and scenario.loss.target is not None:
        scenario.loss.target = num.tensor(np.asarray(scenario.loss.target, dtype=object if num.name == "symbolic" else float))
    if scenario.upstream is not None:
        scenario.upstream.delta = num.tensor(np.asarray(scenario.upstream.delta, dtype=object if num.name == "symbolic" else float))
    scenario.given = {name: Patch(patch.name, num.tensor(patch.values), patch.mask)
                      for name, patch in scenario.given.items()}


def _too_large(top: Spec, work: int, limit: int, position: int) -> ScenarioError:
    last = position == len(top.get("layers")) - 1
    amount = f"about {work:,}" if last else f"at least {work:,}"
    part = "" if last else ", counting only layers[0]" + (f" to layers[{position}]" if position else "")
    return top.doc.error(
        ("layers", position),
        f"this network needs {amount} scalar operations (forward and backward{part}), more than the "
        f"{limit:,} bptrace runs as explicit loops by default (about ten seconds)",
        "pass --no-size-limit to run it anyway")


def _tolerance(top: Spec) -> Tolerance:
    """The scenario's `tolerance:` key: absent or `as_written`; a number (absolute); or
    `{abs: 1e-4, rel: 0}` (either may be left out, as 0)."""
    raw = top.get("tolerance")
    doc = top.doc
    if raw is None or raw in ("as_written", "as written"):
        return Tolerance()
    hint = "write `tolerance: as_written`, a number such as 1e-4, or {abs: 1e-4, rel: 1e-3}"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, dict)):
        raise doc.error(("tolerance",), f"tolerance must be `as_written`, a number or {{abs, rel}}, found {raw!r}",
                        hint)
    if not isinstance(raw, dict):
        problem = tolerance_problem("abs", float(raw))
        if problem:
            raise doc.error(("tolerance",), problem)
        return Tolerance(float(raw), 0.0)
    spec = Spec(doc, ("tolerance",), raw, ("abs", "rel"), "tolerance")
    if not raw:
        raise doc.error(("tolerance",), "tolerance is empty", hint)
    values = []
    for key in ("abs", "rel"):
        value = spec.number(key, 0.0)
        problem = tolerance_problem(key, value)
        if problem:
            raise spec.error(key, problem)
        values.append(value)
    return Tolerance(*values)


def _conventions(top: Spec) -> Conventions:
    if "conventions" not in top:
        return Conventions()
    spec = top.sub("conventions", ("kernel", "flatten", "index_base"), "conventions")
    base = spec.get("index_base", 0)
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base not in (0, 1):
        raise spec.error("index_base", f"index_base must be 0 or 1, found {kind_of(base)}",
                         "0 as in Python and PyTorch, 1 as in MATLAB and most textbooks")
    return Conventions(kernel=spec.choice("kernel", ("correlation", "convolution"), "correlation"),
                       flatten=spec.choice("flatten", ("row", "column"), "row"),
                       index_base=int(base))


def _written_reads(raw, position: int, layer_specs, input_names) -> list:
    """The names a raw layer mapping reads, as written: its `from:`, else the layer before
    it (the sole input, for the first layer).  Only for deciding the input's shape: the
    plan validates `from` with located errors."""
    written = raw.get("from") if isinstance(raw, dict) else None
    if written is not None:
        return [str(v) for v in (written if isinstance(written, list) else [written])]
    if position == 0:
        return list(input_names)[:1]
    previous = layer_specs[position - 1]
    name = previous.get("name") if isinstance(previous, dict) else None
    if name is None:      # a layer without a name is called by type and running number
        kind = previous.get("type") if isinstance(previous, dict) else None
        if not isinstance(kind, str):
            return []
        count = sum(1 for spec in layer_specs[:position] if isinstance(spec, dict) and spec.get("type") == kind)
        name = f"{kind}{count}"
    return [str(name)]


def _first_kind(layer_specs, input_name: str = "input", input_names=("input",)) -> str | None:
    """The type of the first layer that reads the input (directly or through activations
    and merges, which keep the shape) and is neither: it decides whether a 1-D or 2-D input is a feature vector
    (dense, or activations alone: a softmax of [1, 2, 3] is over the three values) or a
    signal / one map (everything else)."""
    reached = {input_name}
    counts: dict = {}
    for position, spec in enumerate(layer_specs):
        if not isinstance(spec, dict):
            continue
        kind = spec.get("type")
        if not isinstance(kind, str):
            continue          # refused, with its location, when the layers are built
        counts[kind] = counts.get(kind, 0) + 1
        name = spec.get("name") or f"{kind}{counts[kind]}"
        if not reached & set(_written_reads(spec, position, layer_specs, input_names)):
            continue
        if kind not in ACTIVATIONS and kind not in MERGES:
            return kind
        reached.add(str(name))
    return None


def _inputs(top: Spec, layer_specs) -> tuple:
    """{name: values in canonical shape} and {name: where the values came from}: the one
    `input:`, or each of `inputs: {x: ..., y: ...}`."""
    if "input" in top:
        x, origin = _input(top, ("input",), layer_specs, "input", ("input",))
        return {"input": x}, {"input": origin}
    spec = top.sub("inputs", None, "inputs")
    if not spec.data:
        raise top.error("inputs", "`inputs:` is empty", "name each input: `inputs: {x: [...], y: [...]}`")
    names = [str(name) for name in spec.data]
    inputs, origins = {}, {}
    for name in spec.data:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) \
                or name in ("input", "loss"):
            raise top.doc.error(("inputs", name), f"'{name}' cannot name an input",
                                "use letters, digits and _, starting with a letter; not 'input' or 'loss'",
                                at_key=True)
        inputs[name], origins[name] = _input(top, ("inputs", name), layer_specs, name, names)
    return inputs, origins


def _input(top: Spec, path: tuple, layer_specs, name: str, input_names) -> tuple:
    """One input in canonical shape, and where its values came from in words."""
    value = top.doc.data
    for key in path:
        value = value[key]
    what = "the input" if name == "input" else f"input {name}"
    if isinstance(value, dict) and "fill" not in value and "symbols" not in value:
        if "random" not in value:
            raise top.doc.error(path, "expected numbers (a list such as [[1, 2], [3, 4]]), "
                                      "{random: uniform, shape: [...]} or {fill: arange, shape: [...]}, "
                                      "found a mapping without `random:` or `fill:`")
        spec = Spec(top.doc, path, value, ("random", "shape", "seed", "low", "high"), "a random input")
        kind = spec.choice("random", ("uniform", "normal"), None)
        if kind == "normal":
            for key in ("low", "high"):
                if key in spec:
                    raise spec.error(key, f"`{key}` is for `random: uniform`; `random: normal` draws "
                                          "from the standard normal distribution", "remove it")
        if "shape" not in spec or not isinstance(spec.get("shape"), list) or not spec.get("shape"):
            raise spec.error("shape" if "shape" in spec else None,
                             "a random input needs `shape:`, a list of sizes such as [28, 28]")
        shape = tuple(spec._int("shape", v, 1, (i,)) for i, v in enumerate(spec.get("shape")))
        if len(shape) > 4:
            raise spec.error("shape", f"the input must be [W], [H][W], [C][H][W] or [N][C][H][W]; "
                                      f"found {len(shape)} sizes")
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise spec.error("shape", f"an input of {math.prod(shape):,} numbers is more than the "
                                      f"{MAX_TENSOR_ELEMENTS:,} bptrace holds in one tensor")
        seed = spec.integer("seed", 0, minimum=0)
        rng = np.random.default_rng(seed)
        if kind == "uniform":
            low, high = spec.number("low", 0.0), spec.number("high", 1.0)
            if not low < high:
                raise spec.error("high" if "high" in spec else "low",
                                 f"`low` ({low:g}) must be below `high` ({high:g}): numbers are drawn from [low, high)")
            if not math.isfinite(high - low):
                raise spec.error("high" if "high" in spec else "low",
                                 f"the range [{low:g}, {high:g}) is wider than a float can hold",
                                 "keep high − low below 1.8e308")
            x = rng.uniform(low, high, size=shape)
            origin = f"drawn uniformly from [{low:g}, {high:g}) (seed {seed})"
        else:
            x = rng.normal(0.0, 1.0, size=shape)
            origin = f"drawn from a standard normal (seed {seed})"
    else:
        x, origin = read_tensor(top.doc, path, value, what=what), fill_origin(value)
    if x.ndim == 0 or x.ndim > 4:
        raise top.doc.error(path, f"{what} must be [W], [H][W], [C][H][W] or [N][C][H][W]; "
                                  f"found {'a single number' if x.ndim == 0 else f'{x.ndim} nested levels'}")
    first = _first_kind(layer_specs, name, input_names)
    if first in RECURRENT:
        # a sequence: [T] (one feature), [T][features] (one sample) or [N][T][features]
        if x.ndim > 3:
            raise top.doc.error(path, f"{what} of a {first} layer must be [T][features] or [N][T][features]; "
                                      f"found {x.ndim} nested levels")
        return x.reshape((1,) * (3 - x.ndim) + x.shape) if x.ndim > 1 else x.reshape(1, -1, 1), origin
    if first in ("dense", None) and x.ndim <= 2:
        return (x.reshape(1, -1) if x.ndim == 1 else x), origin       # features: [F] or [N][F]
    return (x.reshape((1,) * (4 - x.ndim) + x.shape) if x.ndim > 1 else x.reshape(1, 1, 1, -1)), origin


def _layers(top: Spec, inputs: dict, conventions, work_limit=None) -> tuple:
    """The layers, built in the order written, and the plan that wires them."""
    rng, drawn = None, None
    if "init" in top:
        init = top.sub("init", ("scheme", "seed"), "init")
        scheme = init.choice("scheme", ("glorot_uniform",), "glorot_uniform")
        seed = init.integer("seed", 0, minimum=0)
        rng, drawn = np.random.default_rng(seed), f"drawn by {scheme} (seed {seed})"
    layers, nodes, counts, seen, work = [], [], {}, {}, 0
    # what a layer may read: the inputs, then each layer once it is defined
    defined = {name: (input_value(name), values.shape, "the input" if name == "input" else f"input {name}")
               for name, values in inputs.items()}
    positions = {}
    for position, raw in enumerate(top.get("layers")):
        path = ("layers", position)
        if not isinstance(raw, dict):
            raise top.doc.error(path, "each layer is a mapping such as {type: conv, kernel: [[1, 0], [0, 1]]}, "
                                      f"found {kind_of(raw)}")
        if "type" not in raw:
            raise top.doc.error(path, "this layer has no `type:`", "one of: " + ", ".join(LAYERS))
        kind = raw.get("type")
        if not isinstance(kind, str):
            raise top.doc.error(path + ("type",), f"a layer type is one word, found {kind_of(kind)}",
                                "one of: " + ", ".join(LAYERS))
        if kind not in LAYERS:
            raise top.doc.error(path + ("type",), f"unknown layer type '{kind}'", suggest(kind, LAYERS))
        cls = LAYERS[kind]
        spec = Spec(top.doc, path, raw, {"type", "name", "from"} | cls.keys, f"a {kind} layer")
        counts[kind] = counts.get(kind, 0) + 1
        name = spec.text("name") or f"{kind}{counts[kind]}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name == "input" or name == "loss":
            raise spec.error("name", f"'{name}' cannot name a layer",
                             "use letters, digits and _, starting with a letter; not 'input' or 'loss'")
        if name in seen or name in inputs:
            first = f"layers[{seen[name]}]" if name in seen else "an input"
            raise spec.error("name" if "name" in spec else "type",
                             f"two {'layers are' if name in seen else 'values are'} named '{name}' (the first is {first})",
                             None if "name" in spec else "give this layer a `name:`")
        seen[name] = position
        reads = _reads(spec, name, position, defined, positions, top.get("layers"), inputs)
        shapes = tuple(defined[r][1] for r in reads)
        sources = tuple(defined[r][2] for r in reads)
        if len(reads) > 1 and not cls.merge:
            raise spec.error("from", f"a {kind} layer reads one value; `from` names {len(reads)}",
                             "merge them first with an add, multiply or concat layer")
        ctx = BuildContext(in_shape=shapes[0], conventions=conventions, previous=sources[0], rng=rng,
                           in_shapes=shapes, sources=sources)
        try:
            layer = cls.build(name, spec, ctx)
        except ScenarioError as error:
            raise _with_chain(error, name, kind, reads, defined, spec, _warnings(layers), positions) from None
        layer.origins = {role: fill_origin(spec.get(role)) if role in spec else "zeros (not written)"
                         if role.startswith("bias") else layer.unwritten.get(role, drawn) for role in layer.params}
        # (an empty output cannot happen: sizes are at least 1 and a window fits its input)
        size = math.prod(layer.out_shape)
        if size > MAX_TENSOR_ELEMENTS:
            raise spec.error(None, f"{kind} {name} makes {size:,} numbers, more than the "
                                   f"{MAX_TENSOR_ELEMENTS:,} bptrace holds in one tensor")
        work += layer.multiply_adds()
        if work_limit is not None and work > work_limit:
            raise _too_large(top, work, work_limit, position)
        layers.append(layer)
        nodes.append(Node(name, kind, tuple(defined[r][0] for r in reads), layer.out_shape,
                          tuple(layer.param_roles), position))
        defined[name] = (layer_value(name), layer.out_shape, f"{kind} {name}", reads[0])
        positions[name] = position
    plan = Plan(inputs=[input_value(name) for name in inputs], nodes=nodes, output=nodes[-1].name)
    return layers, plan


def _reads(spec: Spec, name: str, position: int, defined: dict, positions: dict, layer_specs, inputs) -> list:
    """The names a layer reads: `from:` (one name or a list), else the layer before it, or
    the input for the first layer.  Only names defined above it: the graph has no cycles."""
    if "from" not in spec:
        if position:
            return [list(positions)[-1]]
        if len(inputs) > 1:
            raise spec.error(None, f"the network has {len(inputs)} inputs ({', '.join(inputs)}); the first "
                                   "layer must say which it reads", f"write `from: {next(iter(inputs))}`")
        return [next(iter(inputs))]
    written = spec.get("from")
    items = written if isinstance(written, list) else [written]
    if not items:
        raise spec.error("from", "`from` is an empty list", "name the layer or input it reads")
    reads = []
    for k, item in enumerate(items):
        where = ("from", k) if isinstance(written, list) else ("from",)
        if not isinstance(item, str) or isinstance(item, bool):
            raise spec.doc.error(spec.path + where, f"`from` names a layer or an input, found {kind_of(item)}")
        if item == name:
            raise spec.doc.error(spec.path + where, f"layer '{name}' cannot read itself",
                                 "name a layer above it, or an input")
        if item not in defined:
            later = [i for i, raw in enumerate(layer_specs) if isinstance(raw, dict) and raw.get("name") == item]
            if later:
                raise spec.doc.error(spec.path + where,
                                     f"'{item}' is defined below this layer (layers[{later[0]}]); a layer reads only "
                                     "names defined above it, so the network has no cycles",
                                     "move the layer it reads above it")
            raise spec.doc.error(spec.path + where, f"there is no layer or input named '{item}'",
                                 suggest(item, list(defined), "defined above are"))
        reads.append(item)
    return reads


def _output(top: Spec, scenario: Scenario):
    """`output:` names the layer the loss applies to; by default the last one."""
    if "output" not in top:
        return
    name = top.text("output")
    names = [layer.name for layer in scenario.layers]
    if name not in names:
        raise top.error("output", f"there is no layer '{name}'", suggest(name, names, "the layers are"))
    scenario.plan.start(name)


def _start(top: Spec, scenario: Scenario):
    """Where the backward pass starts: a loss with a target, or a given upstream error."""
    has_loss, has_up = "loss" in top, "upstream" in top
    if has_loss and has_up:
        second = max(("loss", "upstream"), key=lambda key: top.doc.mark((key,))[0] or 0)
        raise top.error(second, "a scenario needs exactly one of `loss:` (with a target) or `upstream:` "
                                "(a given error), not both", "remove one of them")
    if not has_loss and not has_up:
        raise top.error(None, "a scenario needs exactly one of `loss:` (with a target) or `upstream:` "
                              "(a given error), and this one has neither",
                        "add e.g. `loss: {type: half_sse, target: [...]}`")
    last = scenario.output
    if has_up:
        spec = top.sub("upstream", ("layer", "delta"), "upstream")
        names = [layer.name for layer in scenario.layers]
        name = spec.text("layer", last.name)
        if name not in names:
            raise spec.error("layer", f"there is no layer '{name}'", suggest(name, names, "the layers are"))
        scenario.plan.start(name)
        if "delta" not in spec:
            raise spec.error(None, "upstream needs `delta:`, the error dL/d(output) of that layer")
        shape = scenario.layer(name).out_shape
        delta = spec.tensor("delta", what="the upstream delta", shape=shape)
        if delta.ndim == 0:
            delta = every(delta, shape)     # one number: every element of the output gets it
        if not fits(delta.shape, shape):
            raise shape_error(top.doc, ("upstream", "delta"), f"the error at {name}'s output",
                              delta.shape, shape)
        scenario.upstream = Upstream(name, delta.reshape(shape))
        return
    spec = top.sub("loss", ("type", "target"), "the loss")
    kind = spec.choice("type", LOSS_TYPES, None)
    shape = last.out_shape
    if not LOSSES[kind].needs_target:
        # `sum` and `mean` read the output alone, as y.sum().backward()
        if "target" in spec:
            raise spec.error("target", f"the {kind} loss has no target: it is the {kind} of {last.name}'s output",
                             "remove `target:`, or use a loss that compares with one (mse, l1, ...)")
        scenario.loss = Loss(kind, None)
        return
    if "target" not in spec:
        raise spec.error(None, "the loss needs `target:`")
    if kind == "cross_entropy" and len(shape) != 2:
        raise spec.error("type", f"cross_entropy needs class scores per sample, but {last.name} makes a "
                                 "feature map", "add a flatten and a dense layer")
    if kind == "cross_entropy" and shape[1] < 2:
        raise spec.error("type", f"cross_entropy needs at least 2 class scores per sample; {last.name} makes 1",
                         "use bce for one probability, or give the last layer one output per class")
    target = spec.tensor("target", what="the target", shape=shape)
    classes = None
    if kind == "cross_entropy" and len(shape) == 2 and target.size == shape[0] and not fits(target.shape, shape):
        # one class index per sample
        written = list(np.atleast_1d(target).reshape(-1))
        for i, c in enumerate(written):
            where = ("loss", "target") + ((i,) if target.ndim else ())
            if hasattr(c, "expr"):
                # `arithmetic: symbolic`: the index picks which score is the right class, so
                # it must be a number (a letter bound by `values:` stands for its value)
                if c.value is None:
                    raise top.doc.error(where, f"class index {c} is a letter without a value: cross_entropy "
                                               "needs a number to pick the right class's score",
                                        f"write a class index 0..{shape[1] - 1}, or bind {c} with `values:`")
                written[i] = c = c.value
            shown = f"{c:g}" if isinstance(c, float) else exact_text(c)
            if not float(c).is_integer():
                raise top.doc.error(where, f"class index {shown} is not a whole number",
                                    f"write a class index 0..{shape[1] - 1} or a one-hot vector of {shape[1]}")
            if not 0 <= c < shape[1]:
                raise top.doc.error(where, f"class index {shown} is out of range 0..{shape[1] - 1} "
                                           f"({last.name} makes {shape[1]} class scores; class indices start at 0)")
        classes = [int(c) for c in written]
        target = np.zeros(shape)
        for n, c in enumerate(classes):
            target[n, c] = 1.0
    elif not fits(target.shape, shape):
        raise shape_error(top.doc, ("loss", "target"), f"the target for {last.name}'s output",
                          target.shape, shape)
    if kind == "bce" and ((target < 0) | (target > 1)).any():
        bad = np.argwhere((target < 0) | (target > 1))[0]
        raise spec.error("target", f"bce targets are probabilities between 0 and 1, found {target[tuple(bad)]:g}")
    if kind == "cross_entropy" and (target < 0).any():
        raise spec.error("target", f"cross_entropy targets are class indices or probabilities, "
                                   f"found {target[target < 0][0]:g}")
    if kind == "cross_entropy" and classes is None:
        sums = target.reshape(shape).sum(axis=1)
        off = [n for n, total in enumerate(sums) if abs(total - 1) > 1e-9]
        if off:
            sample = f"sample {off[0]}'s" if shape[0] > 1 else "the"
            raise spec.error("target", f"a cross_entropy target is a class index or a probability vector; "
                                       f"{sample} target sums to {sums[off[0]]:g}, not 1",
                             "write the class index, or a one-hot vector")
    scenario.loss = Loss(kind, target.reshape(shape), classes)


def _with_chain(error, name, kind, reads, defined, spec, warnings, positions=None):
    """A shape mismatch with the shapes that led to it (`input 5×5 → c1 conv 3×3 → p1
    maxpool 1×1 → f flatten 1 → h`), so that the layer whose size went wrong shows, not only
    the one that noticed; and a dense layer's weights written [in][out] are named transposed."""
    message = str(error.message)
    if not any(word in message for word in (" expects ", "larger than")):
        return error
    chain, at, walked = [], reads[0] if reads else None, []
    while at is not None and at in defined:
        walked.append(at)
        shape, source = defined[at][1], defined[at][2]
        dropped = ", which drops its input's " + warnings[at].split("its ", 1)[1].replace(" are never read", "") \
            if at in warnings else ""
        chain.append(f"{at} {_shape_words(shape)}" if source.startswith(("the ", "input "))
                     else f"{at} ({source.split()[0]}{dropped}) {_shape_words(shape)}")
        at = defined[at][3] if len(defined[at]) > 3 else None
    hint = original_hint = error.hint
    if kind == "dense" and "weights" in spec:
        written = np.asarray(spec.get("weights"), dtype=object)
        expected = _features(defined[reads[0]][1])
        if written.ndim == 2 and written.shape[0] == expected and written.shape[1] != expected:
            hint = (f"the weights look transposed: they are {written.shape[0]}×{written.shape[1]}, "
                    f"[in][out]; write them [out][in], {written.shape[1]} rows of {expected}")
    if len(chain) >= 3:         # (after the input and one layer, the message says it all)
        message += "; the shapes: " + " → ".join(reversed(chain)) + f" → {name} ({kind})"
    error.message, error.hint = message, hint
    error.args = (error.message,)
    if hint is original_hint and " expects " in message and positions is not None:
        # (weights that look transposed are the dense layer's own mistake)
        return _blamed(error, list(reversed(walked)), defined, spec, warnings, positions)
    return error


def _blamed(error, walked, defined, spec, warnings, positions):
    """The error located at the layer where the sizes went wrong, when the chain shows it:
    a pooling layer whose windows do not tile its input (its last rows or columns never
    read) was fed a map of the wrong size, so the layer that made that map (a conv whose
    kernel was typed for another size, as a 3×3 kernel typed for 2×2) is blamed, at the key
    that set its size, rather than the layer far below that noticed the count."""
    for k, at in enumerate(walked):
        if at not in warnings or k == 0:
            continue
        made_by = walked[k - 1]
        if made_by not in positions:
            return error
        raw = spec.doc.data["layers"][positions[made_by]] if hasattr(spec.doc, "data") else None
        kind = defined[made_by][2].split()[0]
        key = next((key for key in ("kernel", "size", "weights") if isinstance(raw, dict) and key in raw), None)
        shape = _shape_words(defined[made_by][1])
        moved = spec.doc.error(("layers", positions[made_by]) + ((key,) if key else ()),
                               f"{error.message}; the sizes first go wrong at {made_by} ({kind}), whose {shape} "
                               f"output {at} reads: {warnings[at]}",
                               f"check {made_by}'s {key or 'size'}: the layers below it expect another size")
        return moved
    return error


def _shape_words(shape) -> str:
    kept = [str(d) for d in shape if d != 1]
    return "×".join(kept) if kept else "1"


def _features(shape) -> int:
    return int(np.prod(shape[1:]))


def _warnings(layers) -> dict:
    """What runs but is likely not meant: pooling windows that do not tile their map leave
    its last rows or columns unread (PyTorch's floor mode does the same, silently)."""
    found = {}
    for layer in layers:
        if getattr(layer, "type", "") not in ("maxpool", "avgpool") or len(layer.in_shape) != 4:
            continue
        (_, _, H, W), (kh, kw), (sh, sw), (ph, pw) = layer.in_shape, layer.size, layer.stride, layer.padding
        left = [(n + 2 * p - k) % s for n, k, s, p in ((H, kh, sh, ph), (W, kw, sw, pw))]
        if any(left):
            parts = [f"{count} {axis}s" if count > 1 else axis for count, axis in zip(left, ("row", "column")) if count]
            found[layer.name] = (f"the {kh}×{kw} windows with stride {sh},{sw} do not tile the "
                                 f"{H + 2 * ph}×{W + 2 * pw} map: its last {' and '.join(parts)} are never read")
    return found


# --- training: regularization, optimizer, steps ---------------------------------------------

def _training(top: Spec, scenario: Scenario, work_limit: int | None):
    """`regularization: {l2: λ}`, `optimizer: {type: ..., state: ...}` and `steps: N`
    (README "Training: losses, optimizers, several steps")."""
    if "regularization" in top:
        spec = top.sub("regularization", ("l2",), "regularization")
        lam = spec.number("l2", required=True)
        if lam < 0:
            raise spec.error("l2", f"the L2 weight λ cannot be negative, found {lam:g}")
        if scenario.loss is None:
            raise top.error("regularization", "regularization adds a penalty to the loss, and this scenario "
                                              "starts from a given upstream error", "use `loss:`, or remove it")
        scenario.regularization = lam
    if "optimizer" in top:
        if "learning_rate" in top:
            raise top.error("optimizer", "a scenario has `learning_rate:` (plain SGD) or `optimizer:`, not both",
                            f"write the rate as the optimizer's `lr: {top.get('learning_rate')}`")
        scenario.optimizer = _optimizer(top)
        scenario.optimizer.state = _optimizer_state(top.sub("optimizer"), scenario)
    steps = top.integer("steps", 1, minimum=1)
    if steps > 1 and scenario.update is None:
        raise top.error("steps", f"training {steps} steps needs an update after each backward pass",
                        "add `optimizer: {type: sgd, lr: 0.1}` or `learning_rate: 0.1`")
    work = scenario.work() * steps
    if work_limit is not None and steps > 1 and work > work_limit:
        raise top.error("steps", f"{steps} training steps need about {work:,} scalar operations, more than the "
                                 f"{work_limit:,} bptrace runs as explicit loops by default (about ten seconds)",
                        "pass --no-size-limit to run it anyway, or train fewer steps")
    scenario.steps = steps


def _optimizer(top: Spec) -> Optimizer:
    """The optimizer's type and options: torch.optim's names, defaults and range checks."""
    spec = top.sub("optimizer", None, "the optimizer")
    kind = spec.choice("type", tuple(OPTIONS), None)
    defaults = OPTIONS[kind]
    Spec(top.doc, ("optimizer",), spec.data, ("type", "state") + tuple(defaults), f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} optimizer")
    options = {}
    for key, default in defaults.items():
        if isinstance(default, bool):
            value = spec.get(key, default)
            if not isinstance(value, bool):
                raise spec.error(key, f"`{key}` is true or false, found {kind_of(value)}")
        elif key == "betas":
            value = spec.get(key, list(default))
            if not isinstance(value, list) or len(value) != 2 or \
                    any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in value):
                raise spec.error(key, f"betas is a pair of numbers [β₁, β₂] such as [0.9, 0.999], found "
                                      f"{kind_of(value)}")
            bad = [i for i, b in enumerate(value) if not 0 <= b < 1]
            if bad:
                raise top.doc.error(("optimizer", "betas", bad[0]),
                                    f"β{'₁₂'[bad[0]]} must be at least 0 and below 1, found {value[bad[0]]:g}")
            value = (float(value[0]), float(value[1]))
        else:
            value = spec.number(key, default)
            if value < 0:
                raise spec.error(key, f"{key} cannot be negative, found {value:g}")
        options[key] = value
    if kind == "sgd" and options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
        raise spec.error("nesterov", "Nesterov momentum needs momentum above 0 and dampening 0 (as torch.optim.SGD)")
    return Optimizer(kind, options)


def _optimizer_state(spec: Spec, scenario: Scenario) -> dict:
    """`state: {c1.kernel: {exp_avg: ..., step: 3}}`: the state the first step starts from,
    per parameter the update changes; what is not given starts fresh, as PyTorch's."""
    if "state" not in spec:
        return {}
    optimizer = scenario.optimizer
    states = spec.sub("state", None, "the optimizer state")
    params = {f"{layer.name}.{role}": layer.params[role] for layer in scenario.active_layers
              for role in layer.param_roles}
    allowed = optimizer.state_keys() + (("step",) if "step" in GIVEN_KEYS[optimizer.type] else ())
    given = {}
    for key, written in states.data.items():
        if key not in params:
            raise spec.doc.error(states.path + (key,), f"'{key}' is not a parameter the update changes",
                                 did_you_mean(str(key), list(params)) or "write a parameter's name, such as "
                                 + (next(iter(params), "c1.kernel")), at_key=True)
        if not allowed:
            raise spec.doc.error(states.path + (key,), f"this {optimizer.type} optimizer keeps no state "
                                                         "(momentum is 0)", "remove `state:`", at_key=True)
        entry = states.sub(key, allowed, f"the {optimizer.type} state of {key}")
        shape = params[key].shape
        values = {}
        for name in entry.data:
            if name == "step":
                values["step"] = entry.integer("step", minimum=0)
                continue
            tensor = entry.tensor(name, what=f"{key}'s {name}", shape=shape)
            if tensor.ndim == 0:
                tensor = every(tensor, shape)
            if not fits(tensor.shape, shape):
                raise shape_error(spec.doc, entry.path + (name,), f"{key}'s {name}", tensor.shape, shape)
            if name in ("exp_avg_sq", "square_avg", "sum") and (tensor < 0).any():
                raise entry.error(name, f"{key}'s {name} is an average or sum of squares and cannot be negative, "
                                        f"found {tensor[tensor < 0].ravel()[0]:g}")
            values[name] = tensor.reshape(shape)
        given[key] = values
    return given


def _shapes(scenario: Scenario) -> dict:
    """Every traced name with its canonical shape, in the order the engine makes them:
    one training step's names (`_step_shapes`), once per step with its prefix."""
    one = _step_shapes(scenario)
    if scenario.steps == 1:
        return one
    return {scenario.prefix(k) + name: shape for k in range(1, scenario.steps + 1) for name, shape in one.items()}


def _step_shapes(scenario: Scenario) -> dict:
    """One training step's names (the engine's walk of the plan: inputs; each layer's
    parameters and output; the loss (its parts first, with regularization); backward
    through the active layers in reverse, each layer's gradients and then the deltas it
    completes; the updates, each parameter's new optimizer state before its new values)."""
    plan = scenario.plan
    shapes = {name: values.shape for name, values in scenario.inputs.items()}
    for layer in scenario.layers:
        for role, values in layer.params.items():
            shapes[f"{layer.name}.{role}"] = values.shape
        for name in layer.extras:
            shapes[f"{layer.name}.{name}"] = layer.extra_shapes[name]
        shapes[f"{layer.name}.out"] = layer.out_shape
    if scenario.loss:
        if scenario.regularization is not None:
            shapes.update({LOSS_DATA: (), LOSS_L2: ()})
        shapes["loss"] = ()
    start = scenario.layer(plan.output)
    shapes[f"{start.name}.delta"] = start.out_shape
    for node in reversed(plan.active):
        layer = scenario.layer(node.name)
        for name in layer.backward_extras:
            shapes[f"{layer.name}.{name}"] = layer.extra_shapes[name]
        for role in layer.param_roles:
            shapes[f"{layer.name}.grad.{role}"] = layer.params[role].shape
        for value in plan.completes(node):
            shapes[value.delta] = shapes[value.out]
    update = scenario.update
    if update is not None:
        for layer in scenario.active_layers:
            n = scenario.names(layer)
            for role in layer.param_roles:
                for key in update.state_keys():
                    shapes[n.state(role, key)] = layer.params[role].shape
                shapes[n.new(role)] = layer.params[role].shape
    return shapes


def parse_element(text: str):
    """'c1.grad.kernel[0,1]' -> ('c1.grad.kernel', (0, 1)); 'p1.delta' -> ('p1.delta', None)."""
    match = _ELEMENT.match(str(text).strip())
    if not match:
        raise ValueError(f"'{text}' is not a name or name[index]")
    index = match.group("index")
    if index is None:
        return match.group("name").strip(), None
    parts = [p.strip() for p in index.split(",")] if index.strip() else []
    if not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise ValueError(f"the index in '{text}' must be whole numbers separated by commas")
    return match.group("name").strip(), tuple(int(p) for p in parts)


def resolve(scenario: Scenario, doc: Document, path: tuple, key: str):
    """A `name` or `name[index]` key → (name, canonical index or None), or an error located
    at the key."""
    try:
        name, index = parse_element(key)
    except ValueError as exc:
        raise doc.error(path, str(exc), "write a trace name, optionally with an index: c1.grad.kernel[0,1]",
                        at_key=True)
    if name not in scenario.shapes:
        raise doc.error(path, f"'{name}' is not a value in this trace",
                        did_you_mean(name, scenario.shapes) or "see `bptrace run --format json` for the names",
                        at_key=True)
    if index is None:
        return name, None
    shape, base = scenario.shapes[name], scenario.conventions.index_base
    axes = kept_axes(shape)
    if len(index) != len(axes):
        if not axes:
            raise doc.error(path, f"{name} is a single number; write it without an index", at_key=True)
        raise doc.error(path, f"{name} is {shape_words(shape)}, so an element needs {len(axes)} "
                              f"ind{'ex' if len(axes) == 1 else 'ices'}; found {len(index)}", at_key=True)
    for i, axis in zip(index, axes):
        if not base <= i < shape[axis] + base:
            raise doc.error(path, f"index {i} is out of range {base}..{shape[axis] + base - 1} "
                                  f"({name} is {shape_words(shape)}, indices from {base})", at_key=True)
    return name, canonical_index(shape, index, base)


def make_patch(scenario: Scenario, doc: Document, path: tuple, key: str, value) -> Patch:
    name, index = resolve(scenario, doc, path, key)
    shape = scenario.shapes[name]
    values = read_tensor(doc, path, value, what=f"the values of {key}", shape=shape if index is None else ())
    patch = Patch(name, np.zeros(shape), np.zeros(shape, dtype=bool))
    if index is None:
        if not fits(values.shape, shape):
            raise shape_error(doc, path, key, values.shape, shape)
        patch.values[...] = values.reshape(shape)
        patch.mask[...] = True
    else:
        if values.size != 1:
            raise doc.error(path, f"{key} is one element; write a single number, found {shape_words(values.shape)}")
        patch.values[index] = float(values.reshape(()))
        patch.mask[index] = True
    return patch


def non_finite_error(scenario: Scenario, name: str, values: np.ndarray) -> ScenarioError:
    """A step the engine computed holds inf or nan (finite numbers can overflow: 1e200 ·
    1e200): name its first such element and point at what made it."""
    at = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
    element = name + format_index(display_index(values.shape, at, scenario.conventions.index_base))
    value = float(values[at])
    if np.isnan(value):
        message = f"{element} is not a number (nan): the computation met inf − inf or 0 · inf"
    else:
        message = f"{element} is {value}: the numbers grew beyond the largest floating-point number (±1.8e308)"
    return step_error(scenario, name, message, "use smaller inputs, parameters or learning rate")


def step_error(scenario: Scenario, name: str, message: str, hint: str | None = None) -> ScenarioError:
    """An error about the traced step `name`, located at what in the file makes it: its
    layer (or node), the loss, or the optimizer."""
    unprefixed = re.sub(r"^step\d+\.", "", name)
    layer = unprefixed.split(".")[0]
    names = [item.name for item in scenario.layers]
    if ".new." in name or ".state." in name:
        path = ("optimizer",) if scenario.optimizer is not None else ("learning_rate",)
    elif unprefixed.startswith("loss"):
        path = ("loss",)
    elif layer in names and scenario.document and "nodes" in (scenario.document.data or {}):
        path = ("nodes", layer)           # an expression graph's node
    elif layer in names:
        path = ("layers", names.index(layer))
    else:
        path = ("layers", 0)
    return scenario.document.error(path, message, hint) if scenario.document else ScenarioError(message, hint=hint)


def merge_patches(patches) -> dict:
    """Patches for the same step (several elements written separately) become one."""
    merged = {}
    for patch in patches:
        if patch.name in merged:
            into = merged[patch.name]
            into.values[patch.mask] = patch.values[patch.mask]
            into.mask |= patch.mask
        else:
            merged[patch.name] = Patch(patch.name, patch.values.copy(), patch.mask.copy())
    return merged


def _given(top: Spec, scenario: Scenario) -> dict:
    if "given" not in top:
        return {}
    spec = top.sub("given", None, "given")
    first = scenario.prefix(1)
    written = {scenario.names(layer, first).param(role) for layer in scenario.layers for role in layer.params}
    written |= {first + name for name in scenario.inputs}
    # in training step k ≥ 2 the inputs and parameters are copies of what step k − 1 had and made
    copies = {scenario.prefix(k) + name[len(first):]: k for k in range(2, scenario.steps + 1) for name in written}
    patches = []
    for key, value in spec.data.items():
        patch = make_patch(scenario, top.doc, ("given", key), key, value)
        if patch.name in written:
            raise top.doc.error(("given", key), f"'{patch.name}' is written in the scenario itself; "
                                                "`given` pins values the network computes")
        if patch.name in copies:
            k = copies[patch.name]
            bare = patch.name[len(scenario.prefix(k)):]
            source = scenario.prefix(k - 1) + (bare.replace(".", ".new.", 1) if bare not in scenario.inputs else bare)
            raise top.doc.error(("given", key), f"'{patch.name}' is what training step {k} starts from, a copy of "
                                                f"{source}", f"pin {source} instead" if ".new." in source else None)
        patches.append(patch)
    return merge_patches(patches)


def _expected(top: Spec, scenario: Scenario) -> dict:
    if "expected" not in top:
        return {}
    spec = top.sub("expected", None, "expected")
    for key, value in spec.data.items():
        # checks the name, index and shape; an answer may be a fraction ("3/8"), `check` reads it
        make_patch(scenario, top.doc, ("expected", key), key, _fractions_read(value))
    return dict(spec.data)


def _fractions_read(value):
    """Answers with each fraction string ("3/8") as the number it names."""
    if isinstance(value, list):
        return [_fractions_read(item) for item in value]
    fraction = written_fraction(value)
    return value if fraction is None else float(fraction)


def _rounding(top: Spec, scenario: Scenario) -> Rounding | None:
    if "rounding" not in top:
        return None
    spec = top.sub("rounding", ("decimals", "mode", "apply"), "rounding")
    decimals = spec.integer("decimals", required=True, minimum=0)
    if decimals > MAX_DECIMALS:
        raise spec.error("decimals", f"must be at most {MAX_DECIMALS}, found {decimals}",
                         "a float holds about 17 significant digits")
    mode = spec.choice("mode", ROUNDING_MODES, "half_up")
    apply = spec.get("apply", "all")
    items = apply if isinstance(apply, list) else [apply]
    for i, item in enumerate(items):
        where = ("rounding", "apply") + ((i,) if isinstance(apply, list) else ())
        if isinstance(item, str) and item in ROUNDING_GROUPS:
            continue
        if not isinstance(item, str):
            raise top.doc.error(where, f"expected a trace name or one of {', '.join(ROUNDING_GROUPS)}, "
                                       f"found {kind_of(item)}")
        if item not in scenario.shapes:
            raise top.doc.error(where, f"'{item}' is not a trace name nor one of {', '.join(ROUNDING_GROUPS)}",
                                did_you_mean(item, list(scenario.shapes) + list(ROUNDING_GROUPS)))
    return Rounding(decimals, mode, tuple(items))
