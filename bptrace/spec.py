"""Reading one mapping of a scenario file (the top level, a layer, the loss...) with
errors that say which key is wrong, where, and what was expected."""
from __future__ import annotations

import numpy as np

from .errors import did_you_mean
from .source import Document
from .tensors import describe_shape, nested_shape


def _kind(value) -> str:
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
            raise doc.error(self.path, f"{what} must be a mapping of keys to values, found {_kind(data)}")
        self.data = data
        if allowed is not None:
            for key in data:
                if key not in allowed:
                    raise doc.error(self.path + (key,), f"unknown key '{key}' in {what}",
                                    did_you_mean(key, allowed) or
                                    "allowed keys: " + ", ".join(sorted(allowed)))

    def error(self, key, message, hint=None):
        path = self.path + ((key,) if key is not None else ())
        return self.doc.error(path, message, hint)

    def __contains__(self, key):
        return key in self.data

    def get(self, key, default=None):
        return self.data.get(key, default)

    def raw(self, key):
        return self.doc.raw.get(self.path + (key,))

    def sub(self, key, allowed=None, what=None) -> "Spec":
        return Spec(self.doc, self.path + (key,), self.data[key], allowed, what or f"'{key}'")

    def text(self, key, default=None) -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.error(key, f"expected text, found {_kind(value)}")
        return str(value)

    def choice(self, key, options, default=None) -> str:
        value = self.data.get(key, default)
        if value not in options or isinstance(value, bool):
            raise self.error(key, f"'{value}' is not one of: " + ", ".join(map(str, options)),
                             did_you_mean(value, options))
        return value

    def number(self, key, default=None, *, positive=False, required=False) -> float:
        if key not in self.data:
            if required:
                raise self.error(None, f"the key '{key}' is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, found {_kind(value)}")
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
            raise self.doc.error(path, f"expected a whole number, found {_kind(value)}")
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
    def walk(item, where):
        if isinstance(item, list):
            for i, sub in enumerate(item):
                walk(sub, where + (i,))
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise doc.error(where, f"expected a number in {what}, found {_kind(item)}")

    walk(value, tuple(path))
    shape = nested_shape(value)
    if shape is None:
        lengths = [len(v) if isinstance(v, list) else "a number" for v in value]
        raise doc.error(path, f"the rows of {what} have different lengths ({', '.join(map(str, lengths))})",
                        "every row must have the same number of entries")
    if 0 in shape:
        raise doc.error(path, f"{what} is empty")
    return np.array(value, dtype=float)


def shape_error(doc: Document, path, what: str, found, expected) -> Exception:
    return doc.error(path, f"{what} should be {describe_shape(expected)}, found {describe_shape(found)}")
