"""Formatting shared by every renderer: numbers, indices, element labels."""
from __future__ import annotations

from fractions import Fraction

from ..numbers import exact_text
from ..tensors import display_index, element, format_index  # noqa: F401  (element: renderers import it from here)

SIGNIFICANT = 10


def number(value, significant: int = SIGNIFICANT) -> str:
    """A number as a person would write it: up to 10 significant digits, no float noise
    (0.036418200000000005 → 0.0364182), and a true minus sign left to the caller.  An exact
    number (`arithmetic: exact`) is written whole: its decimals when they end, else p/q."""
    if isinstance(value, Fraction):
        return exact_text(value)
    if hasattr(value, "expr"):
        # `arithmetic: symbolic`: a formula (symbolic.py, imported only when one exists)
        from ..symbolic import text
        return text(value)
    value = float(value)
    if value == 0:
        return "0"
    text = f"{value:.{significant}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def shape_text(shape) -> str:
    """A value's shape as shown: `6×24×24`, length-1 axes dropped (`1` for a single number)."""
    kept = [str(d) for d in shape if d != 1]
    return "×".join(kept) if kept else "1"


MINUS = "−"


def minus_sign(text: str) -> str:
    """A number's text with a true minus sign (U+2212) in front, for text read by people."""
    return MINUS + text[1:] if text.startswith("-") else text


def signed(value, significant: int = SIGNIFICANT) -> str:
    """`number()` with a true minus sign, for tables and sums."""
    return minus_sign(number(value, significant))


# --- what the axes of a value are called, for block titles ---------------------------------

AXES = {
    "map": ("sample", "map", "row", "column"),
    "kernel": ("filter", "input map", "row", "column"),
    "transposed kernel": ("input map", "output map", "row", "column"),
    "dense": ("sample", "unit"),
    "weights": ("output unit", "input"),
    "conv bias": ("filter",),
    "bias": ("unit",),
    "sequence": ("sample", "time step", "unit"),
}

RECURRENT = ("rnn", "lstm", "gru")


def axis_names(name: str, shape, layer_type: str | None = None) -> tuple:
    """The names of the canonical axes of the traced value `name` (of shape `shape`);
    `layer_type` tells a conv bias (per filter) from a dense one (per unit)."""
    role = name.rsplit(".", 1)[-1]
    if role == "kernel" and layer_type == "conv_transpose":
        return AXES["transposed kernel"]
    if role in ("kernel", "weights"):
        return AXES[role]
    if layer_type in RECURRENT and role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        # PyTorch's gate blocks one after another: a row is a gate's unit (rnn: a unit)
        row = "unit" if layer_type == "rnn" else "gate unit"
        return (row, "input feature" if role == "weight_ih" else "hidden unit")[:2 if role.startswith("weight") else 1]
    if role == "bias":
        return AXES["conv bias"] if layer_type in ("conv", "conv_transpose") else AXES["bias"]
    # batch norm's statistics, γ and β are per channel (or feature); layer norm's statistics
    # per sample, and its γ, β have a sample's shape
    if layer_type in ("batchnorm", "layernorm") and (role in ("gamma", "beta", "mean", "var")
                                                     or name.endswith((".mean.delta", ".var.delta"))):
        if layer_type == "batchnorm":
            return ("channel",)
        if role in ("gamma", "beta"):
            return AXES["map"][1:] if len(shape) == 3 else AXES["bias"]
        return ("sample",)
    # [N][T][features] is the only 3-axis canonical shape: a sequence (maps have 4)
    return AXES["map"] if len(shape) == 4 else AXES["sequence"] if len(shape) == 3 else AXES["dense"]


def block_title(names, axes, outer, base: int) -> str:
    """`filter 2 · input map 5`: the leading kept axes (`axes`, canonical positions) at `outer`."""
    return " · ".join(f"{names[axis] if axis < len(names) else f'axis {axis}'} {i + base}"
                      for axis, i in zip(axes, outer))


# --- written-out sums: one way of writing `0.61·0.25 + 0.02·(−0.15)` for every renderer ---

def factor_text(value, label: str | None = None, first: bool = True,
                significant: int = SIGNIFICANT) -> tuple[str, bool]:
    """(text, negative) of one factor in a product: a constant by its label (1/4, −0.5), a
    value by its number.  The first factor's minus becomes the term's sign; a later negative
    factor is written in parentheses."""
    text = label if label is not None else number(value, significant)
    if label is None and hasattr(value, "expr") and value.expr.is_Add:
        text = f"({text})"        # a formula that is a sum, as one factor of a product
    negative = text.startswith(("-", MINUS))
    bare = text[1:] if negative else text
    if negative and not first:
        return f"({MINUS}{bare})", False
    return bare, negative


def product_text(factors, significant: int = SIGNIFICANT) -> tuple[bool, list[str]]:
    """(negative, factor texts) of one term; `factors` are (value, constant label or None)."""
    texts, negative = [], False
    for k, (value, label) in enumerate(factors):
        text, sign = factor_text(value, label, first=k == 0, significant=significant)
        negative = sign if k == 0 else negative
        texts.append(text)
    return negative, texts


def sum_pieces(products, dot: str = "·", minus: str = MINUS, factor=lambda text: text) -> list[str]:
    """The pieces of a written sum, `["0.61·0.25", " + 0.02·(−0.15)", " − 1·0.55"]`, from
    `product_text` results; a renderer may wrap between pieces and typeset each factor."""
    pieces = []
    for k, (negative, texts) in enumerate(products):
        body = dot.join(factor(text) for text in texts)
        if k == 0:
            pieces.append((minus if negative else "") + body)
        else:
            pieces.append(f" {minus if negative else '+'} {body}")
    return pieces


def factor_label(factor, trace, step, base: int) -> str:
    """Where a recorded factor comes from, as a person writes it: `s1.out[0,1]`, or for a
    value derived from one (`1 − s1.out`) the expression with the step's index."""
    if factor.name in trace:
        return element(factor.name, trace[factor.name].shape, factor.index, base)
    label = f"({factor.name})" if " " in factor.name else factor.name
    if factor.index is not None and len(factor.index) == len(step.shape):
        return label + format_index(display_index(step.shape, factor.index, base))
    return label


def trace_factors(term) -> list:
    """(value, label) pairs of a recorded term (`trace.Factor`s): constants keep their label."""
    return [(factor.value, factor.name if factor.index is None else None) for factor in term]


def type_text(row) -> str:
    """A summary row's type, with what the layer reads where that is not the row above:
    `add ← c2, input`."""
    return f"{row.type} ← {', '.join(row.reads)}" if row.reads else row.type


# --- check reports: the sentences the text report and Gradescope's output share ------------

def numbers_text(shape) -> str:
    """How many numbers an answer of `shape` holds: "2×2 numbers", "1 number"."""
    return "×".join(map(str, shape)) + " numbers" if shape else "1 number"


def all_right_text(follows: int) -> str:
    return "every answer is right" + (f" ({follows} follow from your own earlier values)" if follows else "")


def first_wrong_text(first, yours: str | None = None) -> str:
    """The first wrong answer against bptrace's: its numbers (`yours`: the answer's text as
    written, where the caller has it), or its shape when that differs."""
    if first.shape is not None:
        return f"{first.label}: yours is {numbers_text(first.shape)}, bptrace's {numbers_text(first.bptrace_shape)}"
    own = f" ({signed(first.own)} from your own earlier values)" if first.own is not None else ""
    return f"{first.label}: yours {yours or signed(first.yours)}, bptrace {signed(first.bptrace)}{own}"
