"""Shapes and indices: canonical shapes inside, length-1 axes dropped outside.

Inside the engine every feature map is `[N][C][H][W]`, every dense value `[N][features]`,
every kernel `[out][in][kh][kw]`.  Wherever a person reads or writes a tensor, axes of
length 1 are left out (BRIEF section 2), so a single 2x2 kernel is a 2x2 matrix and its
elements are `kernel[u,v]`.
"""
from __future__ import annotations

import numpy as np


def squeezed_shape(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


def squeeze(values: np.ndarray):
    """Values as a person sees them: length-1 axes dropped (a scalar for a single value)."""
    return values.reshape(squeezed_shape(values.shape))


def kept_axes(shape) -> list[int]:
    return [axis for axis, d in enumerate(shape) if d != 1]


def display_index(shape, index, base: int = 0) -> tuple:
    """Canonical index → the index a person writes (length-1 axes dropped, index base added)."""
    return tuple(index[axis] + base for axis in kept_axes(shape))


def canonical_index(shape, written, base: int = 0) -> tuple:
    """The inverse of `display_index`; raises IndexError when `written` does not fit."""
    axes = kept_axes(shape)
    written = tuple(written)
    if len(written) != len(axes):
        raise IndexError(f"needs {len(axes)} ind{'ex' if len(axes) == 1 else 'ices'}, got {len(written)}")
    index = [0] * len(shape)
    for axis, i in zip(axes, written):
        if not (base <= i < shape[axis] + base):
            raise IndexError(f"index {i} is out of range {base}..{shape[axis] + base - 1}")
        index[axis] = i - base
    return tuple(index)


def format_index(index) -> str:
    return "[" + ",".join(str(i) for i in index) + "]" if index else ""


def element(name: str, shape, index, base: int = 0) -> str:
    """`c1.kernel[0,1]`: a traced value's element as a person writes it (length-1 axes
    dropped, counted from `base`), as in `expected` keys and `explain` arguments."""
    return name + format_index(display_index(shape, index, base))


def plain(values):
    """Values as nested lists with length-1 axes dropped, or a float for a single value:
    what JSON exports and reports hold."""
    shown = squeeze(np.asarray(values, dtype=float))
    return shown.tolist() if shown.ndim else float(shown)


def nested_shape(value):
    """The shape of a nested list of numbers, or None when it is ragged.  A bare number has
    shape ()."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = {nested_shape(item) for item in value}
    if len(shapes) != 1 or None in shapes:
        return None
    return (len(value),) + shapes.pop()


def every(value: np.ndarray, shape) -> np.ndarray:
    """One number written for a whole tensor: every element of `shape` gets it (a letter of
    `arithmetic: symbolic` stays that letter, not its float)."""
    if value.dtype == object:
        return np.full(shape, value.item(), dtype=object)
    return np.full(shape, float(value))


def fits(written_shape, canonical_shape) -> bool:
    """A written tensor fits a canonical shape when the two agree once length-1 axes are
    dropped from both (so [[1, 2]] and [1, 2] both fit [1, 1, 1, 2])."""
    return squeezed_shape(written_shape) == squeezed_shape(canonical_shape)


def describe_shape(shape) -> str:
    shape = squeezed_shape(shape)
    if not shape:
        return "a single number"
    return "×".join(str(d) for d in shape)
