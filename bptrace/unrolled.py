"""A conv layer as the dense layer it is: one big weight matrix with shared weights, held as
its weights alone (see MAX_UNROLLED_WEIGHTS).

Each row is one output position (o, i, j), each column one input position (c, h, w).  The
entry is the kernel element that joins them, or a structural zero where the kernel does not
reach.  The same kernel element appears in many rows: that is weight sharing (seed 002's
accepted answer: "a convolution layer can be understood as a fully connected layer, with
the constraints that several edge weights are identical and many edge weights are set to 0").

The matrix is built from the layer's own `Conv.window()`, the geometry its forward and
backward loops use, so that stride, padding, groups and the kernel convention cannot drift
from the engine.  Then, per sample, M·x + b is the forward output and Mᵀ·δ is the input
delta, which `unroll` sets next to the engine's numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ScenarioError, did_you_mean
from .tensors import element

SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")

# M·x + b and Mᵀ·δ sum the engine's products in another order: only rounding noise may differ
AGREE_RTOL = 1e-9
AGREE_ATOL = 1e-12

# M is held as its weights only (row, column, kernel element), never as a dense matrix: a
# 100×100 input makes M 19,208×10,000, 1.5 GB dense, though it holds 172,872 weights.  Beyond
# these, the listing of labels and weights itself grows past what a terminal shows or
# memory holds: refused with a located message.
MAX_UNROLLED_WEIGHTS = 1_000_000      # about 4 s and 200 MB
MAX_UNROLLED_POSITIONS = 500_000      # rows + columns, each with its label


@dataclass
class SampleCheck:
    """For one sample of the batch: both products next to the engine's values."""
    sample: int                # as written (index base applied), or None for a batch of one
    x: np.ndarray              # the layer's input, flattened in column order
    out: np.ndarray            # M·x + b
    engine_out: np.ndarray     # the engine's forward output, flattened in row order
    delta: np.ndarray          # the error at the layer's output, flattened in row order
    x_delta: np.ndarray        # Mᵀ·δ
    engine_x_delta: np.ndarray  # the engine's input delta, flattened in column order
    out_worst: float           # the largest |M·x + b − engine|
    out_agree: bool
    x_delta_worst: float | None  # the largest |Mᵀ·δ − engine|, None without a delta
    x_delta_agree: bool | None


@dataclass
class Unrolled:
    layer: str
    rows: list                 # label of each output position, e.g. "c1.out[0,1]"
    columns: list              # label of each input position, e.g. "input[2,3]"
    entry_rows: np.ndarray     # M's weights, one entry each: its row,
    entry_columns: np.ndarray  # its column,
    entry_symbols: np.ndarray  # k for weight w_k (1-based),
    entry_values: np.ndarray   # and its number
    bias: np.ndarray           # per row
    weights: list              # (symbol "w₁", kernel element label, value) for k = 1, 2, ...
    max_row_weights: int       # the most weights in one row (the kernel's reach at one output)
    checks: list               # SampleCheck per sample
    out_name: str
    in_name: str
    delta_name: str
    x_delta_name: str
    bias_name: str             # its bias's traced name (zeros when the layer has none)

    @property
    def shape(self) -> tuple:
        return len(self.rows), len(self.columns)

    @property
    def nonzero(self) -> int:
        return len(self.entry_symbols)

    @property
    def symbols(self) -> np.ndarray:
        """M as a dense int matrix: k for weight w_k, 0 for a structural zero (for a matrix
        small enough to print)."""
        dense = np.zeros(self.shape, dtype=int)
        dense[self.entry_rows, self.entry_columns] = self.entry_symbols
        return dense

    @property
    def matrix(self) -> np.ndarray:
        """M in numbers, dense (for a matrix small enough to print)."""
        dense = np.zeros(self.shape)
        dense[self.entry_rows, self.entry_columns] = self.entry_values
        return dense

    def times(self, x: np.ndarray) -> np.ndarray:
        """M · x"""
        return np.bincount(self.entry_rows, self.entry_values * x[self.entry_columns], minlength=len(self.rows))

    def transposed_times(self, d: np.ndarray) -> np.ndarray:
        """Mᵀ · d"""
        return np.bincount(self.entry_columns, self.entry_values * d[self.entry_rows], minlength=len(self.columns))

    def symbol(self, k: int) -> str:
        return symbol(k)


def symbol(k: int) -> str:
    """w₁, w₂, ... for weight k; · for a structural zero (k = 0)."""
    return f"w{str(k).translate(SUBSCRIPTS)}" if k else "·"


def _compare(mine, engine):
    """(largest difference, agree) of two vectors of the same numbers summed differently."""
    worst = float(np.max(np.abs(mine - engine))) if len(mine) else 0.0
    return worst, bool(np.allclose(mine, engine, rtol=AGREE_RTOL, atol=AGREE_ATOL))


def unrollable(scenario, layer_name: str) -> int:
    """The position of conv layer `layer_name`, or a ScenarioError when it is no conv layer
    or too large to unroll (asked before the trace is run, which may take seconds)."""
    names = [layer.name for layer in scenario.layers]
    if layer_name not in names:
        raise ScenarioError(f"'{layer_name}' is not a layer of this scenario", key=layer_name,
                            hint=did_you_mean(layer_name, names) or "layers: " + ", ".join(names))
    position = names.index(layer_name)
    layer = scenario.layers[position]
    if layer.type != "conv":
        convs = [layer.name for layer in scenario.layers if layer.type == "conv"]
        raise ScenarioError(f"'{layer_name}' is a {layer.type} layer; --unrolled shows a conv layer "
                            "as a dense one", key=layer_name,
                            hint=("conv layers here: " + ", ".join(convs)) if convs else "this scenario has no conv layer")
    N, C, H, W = layer.in_shape
    _, O, Ho, Wo = layer.out_shape
    rows, columns = O * Ho * Wo, C * H * W
    most = rows * math.prod(layer.params["kernel"].shape[1:])        # every tap inside the input
    if most > MAX_UNROLLED_WEIGHTS or rows + columns > MAX_UNROLLED_POSITIONS:
        raise scenario.document.error(
            ("layers", position),
            f"{layer_name} unrolled is a {rows:,}×{columns:,} matrix with up to {most:,} weights, "
            f"more than the {MAX_UNROLLED_WEIGHTS:,} weights and {MAX_UNROLLED_POSITIONS:,} rows and columns "
            "explain --unrolled sets out",
            "explain one number instead, such as `bptrace explain FILE "
            f"'{element(layer_name + '.out', layer.out_shape[1:], (0, 0, 0), scenario.conventions.index_base)}'`, "
            "or unroll the layer on a smaller input")
    return position


def unroll(scenario, trace, layer_name: str) -> Unrolled:
    """The unrolled matrix of conv layer `layer_name`, checked against `trace`."""
    position = unrollable(scenario, layer_name)
    layer = scenario.layers[position]
    base = trace.conventions["index_base"]
    # a scenario that trains several steps is unrolled in its first (its names: step1.c1.out)
    wiring = scenario.names(layer, scenario.prefix(1))
    in_name, x_delta_name = wiring.x, wiring.x_delta
    out_name, delta_name, kernel_name = wiring.out, wiring.delta, wiring.param("kernel")
    kernel = trace.value(kernel_name)
    # no bias parameter at all (`bias: false`) adds nothing
    bias = trace.value(wiring.param("bias")) if "bias" in layer.params else np.zeros(layer.out_shape[1])
    if any(np.isnan(np.asarray(trace.value(name), dtype=float)).any() for name in (kernel_name, in_name, out_name)):
        # `arithmetic: symbolic` with letters unbound: the matrix and its check are numbers
        raise ScenarioError(f"--unrolled writes {layer_name} as a matrix of numbers, and its kernel or input has "
                            "letters without values", key=layer_name,
                            hint="bind the letters with `values:`, or explain one formula: bptrace explain FILE "
                                 f"'{element(out_name, layer.out_shape[1:], (0, 0, 0), base)}'")

    N, C, H, W = layer.in_shape
    _, O, Ho, Wo = layer.out_shape
    rows = [(o, i, j) for o, i, j in np.ndindex(O, Ho, Wo)]
    columns = [(c, h, w) for c, h, w in np.ndindex(C, H, W)]
    column_of = {cell: k for k, cell in enumerate(columns)}
    # one symbol per kernel element, numbered in the kernel's own order
    symbol_of = {tuple(int(a) for a in at): k + 1 for k, at in enumerate(np.ndindex(*kernel.shape))}

    entry_rows, entry_columns, entry_symbols = [], [], []
    for r, (o, i, j) in enumerate(rows):
        for ck, c, u, v, h, w in layer.window(o, i, j):
            entry_rows.append(r)
            entry_columns.append(column_of[(c, h, w)])
            entry_symbols.append(symbol_of[(o, ck, u, v)])
    entry_rows, entry_columns, entry_symbols = (np.array(part, dtype=np.intp)
                                                for part in (entry_rows, entry_columns, entry_symbols))
    entry_values = kernel.reshape(-1)[entry_symbols - 1]
    unrolled = Unrolled(
        layer=layer_name,
        # positions within one sample: the same matrix serves every sample of a batch
        rows=[element(out_name, layer.out_shape[1:], cell, base) for cell in rows],
        columns=[element(in_name, layer.in_shape[1:], cell, base) for cell in columns],
        entry_rows=entry_rows, entry_columns=entry_columns, entry_symbols=entry_symbols, entry_values=entry_values,
        bias=bias[[o for o, _, _ in rows]],
        weights=[(symbol(k), element(kernel_name, kernel.shape, at, base), float(kernel[at]))
                 for at, k in symbol_of.items()],
        max_row_weights=int(np.bincount(entry_rows, minlength=len(rows)).max()) if rows else 0,
        checks=[], out_name=out_name, in_name=in_name, delta_name=delta_name, x_delta_name=x_delta_name,
        bias_name=wiring.param("bias"))

    x, out = trace.value(in_name), trace.value(out_name)
    delta = trace.value(delta_name) if delta_name in trace else None
    x_delta = None
    if x_delta_name in trace:
        step = trace[x_delta_name]
        # a value several layers read: Mᵀ·δ is this layer's share of its delta
        x_delta = next((part.values for part in step.parts if part.layer == layer_name), None) \
            if step.parts else step.values
    for n in range(N):
        xs = x[n].reshape(-1)
        ds = delta[n].reshape(-1) if delta is not None else None
        mine_out, engine_out = unrolled.times(xs) + unrolled.bias, out[n].reshape(-1)
        mine_x_delta = unrolled.transposed_times(ds) if ds is not None else None
        engine_x_delta = x_delta[n].reshape(-1) if x_delta is not None else None
        out_worst, out_agree = _compare(mine_out, engine_out)
        x_delta_worst, x_delta_agree = (_compare(mine_x_delta, engine_x_delta)
                                        if mine_x_delta is not None and engine_x_delta is not None else (None, None))
        unrolled.checks.append(SampleCheck(
            sample=n + base if N > 1 else None, x=xs, out=mine_out, engine_out=engine_out,
            delta=ds, x_delta=mine_x_delta, engine_x_delta=engine_x_delta,
            out_worst=out_worst, out_agree=out_agree, x_delta_worst=x_delta_worst, x_delta_agree=x_delta_agree))
    return unrolled
