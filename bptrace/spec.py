"""Reading one mapping of a scenario file (the top level, a layer, the loss...) with
errors that say which key is wrong, where, and what was expected."""
from __future__ import annotations

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

    def tensor(self, key, *, what="numbers") -> np.ndarray:
        """A number or a rectangular nested list of numbers."""
        return read_tensor(self.doc, self.path + (key,), self.data[key], what=what)


def read_tensor(doc: Document, path: tuple, value, *, what="numbers") -> np.ndarray:
    """A number or a rectangular nested list of numbers, or a located error naming the
    first entry that is not a number, or the innermost list whose rows differ."""
    if isinstance(value, dict):
        raise doc.error(path, f"expected numbers for {what} (a number or a list such as [[1, 2], [3, 4]]), "
                              f"found a mapping")

    def walk(item, where):
        if isinstance(item, list):
            for i, sub in enumerate(item):
                walk(sub, where + (i,))
            shapes = [nested_shape(sub) for sub in item]
            if len(set(shapes)) > 1:
                lengths = [f"{len(sub)}" if isinstance(sub, list) else "a number" for sub in item]
                raise doc.error(where, f"the rows of {what} have different lengths ({', '.join(lengths)})",
                                "every row must have the same number of entries")
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise doc.error(where, f"expected a number in {what}, found {kind_of(item)}",
                            "write numbers without quotes" if _quoted_number(item) else None)

    walk(value, tuple(path))
    shape = nested_shape(value)
    if 0 in shape:
        raise doc.error(path, f"{what} is empty")
    return np.array(value, dtype=float)


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
