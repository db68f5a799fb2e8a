"""Reading one mapping of a scenario file (the top level, a layer, the loss...) with
errors that say which key is wrong, where, and what was expected."""
from __future__ import annotations

import re

import numpy as np

from .errors import did_you_mean, suggest
from .source import Document
from .tensors import describe_shape, nested_shape, squeezed_shape


def kind_of(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Spec:
    """A mapping from the document, its key path, and readers for its keys."""

    def __init__(self, doc: Document, path: tuple, data, allowed=None, what="this section"):
        self.doc, self.path = doc, tuple(path)
        if not isinstance(data, dict):
            raise doc.error(self.path, f"{what} must be a mapping of keys to values, found {kind_of(data)}")
        self.data = data
        if allowed is not None:
            for key in data:
                if key not in allowed:
                    raise doc.error(self.path + (key,), f"unknown key '{key}' in {what}",
                                    suggest(key, sorted(allowed), "allowed keys"), at_key=True)

    def error(self, key, message, hint=None):
        path = self.path + ((key,) if key is not None else ())
        return self.doc.error(path, message, hint)

    def __contains__(self, key):
        return key in self.data

    def get(self, key, default=None):
        return self.data.get(key, default)

    def sub(self, key, allowed=None, what=None) -> "Spec":
        return Spec(self.doc, self.path + (key,), self.data[key], allowed, what or f"'{key}'")

    def text(self, key, default=None) -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            # YAML 1.1 reads yes/no/on/off as booleans
            raise self.error(key, f"expected text, found {kind_of(value)}",
                             "put it in quotes" if isinstance(value, bool) else None)
        return str(value)

    def choice(self, key, options, default=None) -> str:
        """One of a few words.  Without a default the key is required."""
        if key not in self.data and default is None:
            raise self.error(None, f"`{key}:` is missing; it is one of: " + ", ".join(map(str, options)))
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value not in options:
            shown = f"'{value}'" if isinstance(value, str) else kind_of(value)
            raise self.error(key, f"{shown} is not one of: " + ", ".join(map(str, options)),
                             did_you_mean(value, options) if isinstance(value, str) else None)
        return value

    def number(self, key, default=None, *, positive=False, required=False) -> float:
        if key not in self.data:
            if required:
                raise self.error(None, f"the key '{key}' is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, found {kind_of(value)}")
        if positive and value <= 0:
            raise self.error(key, f"must be greater than 0, found {value}")
        return float(value)

    def integer(self, key, default=None, *, minimum=None, required=False) -> int:
        if key not in self.data:
            if required:
                raise self.error(None, f"the key '{key}' is missing")
            return default
        return self._int(key, self.data[key], minimum)

    def _int(self, key, value, minimum, path_extra=()):
        path = self.path + (key,) + path_extra
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.doc.error(path, f"expected a whole number, found {kind_of(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise self.doc.error(path, f"expected a whole number, found {value}")
            value = int(value)
        if minimum is not None and value < minimum:
            raise self.doc.error(path, f"must be at least {minimum}, found {value}")
        return value

    def pair(self, key, default, *, minimum) -> tuple:
        """An int, or [rows, columns]: size, stride and padding are written either way."""
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, list):
            if len(value) != 2:
                raise self.error(key, f"expected one whole number or a pair [rows, columns], "
                                      f"found a list of {len(value)}")
            return tuple(self._int(key, v, minimum, (i,)) for i, v in enumerate(value))
        v = self._int(key, value, minimum)
        return (v, v)

    def tensor(self, key, *, what="numbers", shape=None) -> np.ndarray:
        """A number, a rectangular nested list of numbers, or a fill (`read_tensor`)."""
        return read_tensor(self.doc, self.path + (key,), self.data[key], what=what, shape=shape)


def read_tensor(doc: Document, path: tuple, value, *, what="numbers", shape=None) -> np.ndarray:
    """A number or a rectangular nested list of numbers, or a located error naming the
    first entry that is not a number, or the innermost list whose rows differ.  A mapping
    with `fill:` stands for a tensor filled by a rule (`read_fill`); `shape` is the shape it
    takes when it does not say (a parameter's canonical shape), None where it must say."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.size:
        return value.astype(float)      # numbers already (a checked answer's values)
    if isinstance(value, dict):
        if "fill" in value:
            return read_fill(doc, path, value, what=what, shape=shape)
        if "symbols" in value:
            return read_symbols(doc, path, value, what=what, shape=shape)
        raise doc.error(path, f"expected numbers for {what} (a number, a list such as [[1, 2], [3, 4]], "
                              f"or a fill such as {{fill: ones, shape: [2, 2]}}), found a mapping without `fill:`")

    def walk(item, where):
        if isinstance(item, list):
            for i, sub in enumerate(item):
                walk(sub, where + (i,))
            shapes = [nested_shape(sub) for sub in item]
            if len(set(shapes)) > 1:
                lengths = [f"{len(sub)}" if isinstance(sub, list) else "a number" for sub in item]
                raise doc.error(where, f"the rows of {what} have different lengths ({', '.join(lengths)})",
                                "every row must have the same number of entries")
        elif isinstance(item, str) and not _quoted_number(item) and doc.letters is not None:
            _letter(doc, where, item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise doc.error(where, f"expected a number in {what}, found {kind_of(item)}",
                            "write numbers without quotes" if _quoted_number(item) else
                            "a letter stands for a number only with `arithmetic: symbolic`" if _letter_name(item)
                            else None)

    walk(value, tuple(path))
    shape = nested_shape(value)
    if 0 in shape:
        raise doc.error(path, f"{what} is empty")
    if doc.letters is not None and any(isinstance(v, str) for v in _leaves(value)):
        return doc.letters.tensor(value)
    return np.array(value, dtype=float)


def _leaves(value):
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


# `arithmetic: symbolic`: a letter is a name such as w11 (never text handed to an evaluator)
LETTER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def _letter_name(item) -> bool:
    """A name such as w11 (not nan or inf, which YAML leaves as text)."""
    if not isinstance(item, str) or not LETTER.match(item):
        return False
    try:
        float(item)
        return False
    except ValueError:
        return True


def _letter(doc: Document, where: tuple, item: str) -> None:
    if not LETTER.match(item):
        raise doc.error(where, f"`{item}` is not a letter: a letter is a name such as w11 or y "
                               "(a letter, then letters, digits and _)")


def read_symbols(doc: Document, path: tuple, value: dict, *, what="numbers", shape=None) -> np.ndarray:
    """`{symbols: w, shape: [2, 2]}`: a tensor of letters w11 w12 / w21 w22 (symbolic only)."""
    spec = Spec(doc, path, value, ("symbols", "shape"), f"a tensor of letters for {what}")
    if doc.letters is None:
        raise spec.error("symbols", f"{what}: `symbols:` makes letters, which stand for numbers only "
                                    "with `arithmetic: symbolic`")
    prefix = spec.get("symbols")
    if not isinstance(prefix, str) or not LETTER.match(prefix):
        raise spec.error("symbols", f"`symbols:` is the letters' name, such as w, found {kind_of(prefix)}")
    if "shape" in spec:
        raw = spec.get("shape")
        raw = raw if isinstance(raw, list) else [raw]
        shape = tuple(spec._int("shape", v, 1, (i,)) for i, v in enumerate(raw))
    elif shape is None:
        raise spec.error(None, "these letters need `shape:`, a list of sizes such as [2, 2]")
    if any(size + doc.letters.base > 10 for size in shape):
        raise spec.error("shape", f"`symbols: {prefix}` numbers each element by one digit per axis, "
                                  "so an axis holds at most 9 letters here",
                         "write the letters out, as a list of names")
    return doc.letters.fill(prefix, tuple(shape))


# --- filled tensors ------------------------------------------------------------------------
# `{fill: arange, shape: [1, 4, 4, 4], start: 0, step: 1}` and its kin stand for a tensor
# wherever one is written.  Values fill the shape in C order (the last axis fastest), as
# torch.arange(...).reshape(shape) does.  Each rule's keys, and their defaults:
FILLS = {
    "arange": {"start": 0.0, "step": 1.0},       # start + k·step, k = 0, 1, ... (torch.arange)
    "ones": {},
    "zeros": {},
    "full": {"value": None},                     # every element `value` (torch.full); required
    "linspace": {"start": None, "stop": None},   # evenly from start to stop, both included (torch.linspace)
}
# A filled tensor is held in memory like any other: the same bound as layers.MAX_TENSOR_ELEMENTS.
MAX_FILL_ELEMENTS = 10_000_000


def read_fill(doc: Document, path: tuple, value: dict, *, what="numbers", shape=None) -> np.ndarray:
    """The tensor a `{fill: ...}` mapping stands for, or a located error."""
    spec = Spec(doc, path, value, None, f"a fill for {what}")
    kind = spec.choice("fill", tuple(FILLS), None)
    allowed = ("fill", "shape") + tuple(FILLS[kind])
    Spec(doc, path, value, allowed, f"a `fill: {kind}`")
    if "shape" in spec:
        raw = spec.get("shape")
        if isinstance(raw, bool) or not isinstance(raw, (list, int, float)) or raw == []:
            raise spec.error("shape", f"a fill's `shape:` is a list of sizes such as [2, 3], found {kind_of(raw)}")
        shape = tuple(spec._int("shape", v, 1, (i,)) for i, v in enumerate(raw)) if isinstance(raw, list) \
            else (spec._int("shape", raw, 1),)
    elif shape is None:
        raise spec.error(None, "this fill needs `shape:`, a list of sizes such as [1, 4, 4, 4]",
                         "only where the shape is known already (a parameter, a target, given values) may a fill leave it out")
    size = int(np.prod(shape))
    if size > MAX_FILL_ELEMENTS:
        raise spec.error("shape", f"a fill of {size:,} numbers is more than the {MAX_FILL_ELEMENTS:,} bptrace holds "
                                  "in one tensor")
    numbers = {}
    for key, default in FILLS[kind].items():
        if default is None and key not in spec:
            raise spec.error(None, f"`fill: {kind}` needs `{key}:`")
        numbers[key] = spec.number(key, default)
    if kind == "arange":
        flat = [numbers["start"] + k * numbers["step"] for k in range(size)]
    elif kind in ("ones", "zeros", "full"):
        flat = [{"ones": 1.0, "zeros": 0.0}.get(kind) if kind != "full" else numbers["value"]] * size
    else:
        flat = _linspace(numbers["start"], numbers["stop"], size)
    return np.array(flat, dtype=float).reshape(shape)


def _linspace(start: float, stop: float, count: int) -> list:
    """torch.linspace's values (its CPU kernel's scheme; its vectorised loop may differ in
    the last bit): the first half counted up from `start`, the second half down from
    `stop`, so that both ends are exact."""
    if count == 1:
        return [start]
    step = (stop - start) / (count - 1)
    half = count // 2
    return [start + k * step if k < half else stop - (count - 1 - k) * step for k in range(count)]


def fill_origin(value) -> str:
    """Where a written tensor's values came from, in words: "as written", or the fill."""
    if not (isinstance(value, dict) and "fill" in value):
        return "as written"
    kind = value["fill"]
    words = ", ".join(f"{key} {value.get(key, default):g}" for key, default in FILLS.get(kind, {}).items()
                      if isinstance(value.get(key, default), (int, float)))
    return f"filled by {kind}" + (f" ({words})" if words else "")


def _quoted_number(item) -> bool:
    """Text that is a number once its quotes are gone ("0.5"), not a word such as 'O.5'."""
    import math

    try:
        return isinstance(item, str) and math.isfinite(float(item))
    except ValueError:
        return False


def shape_words(shape) -> str:
    """How a person would say a (squeezed) shape in a message: a single number, 3 numbers, 2×2."""
    squeezed = squeezed_shape(shape)
    return f"{squeezed[0]} numbers" if len(squeezed) == 1 else describe_shape(shape)


def shape_error(doc: Document, path, what: str, found, expected) -> Exception:
    return doc.error(path, f"{what} should be {shape_words(expected)}, found {shape_words(found)}")
