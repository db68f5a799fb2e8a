"""Formatting shared by every renderer: numbers, indices, element labels."""
from __future__ import annotations

from ..tensors import display_index, format_index

SIGNIFICANT = 10


def number(value, significant: int = SIGNIFICANT) -> str:
    """A number as a person would write it: up to 10 significant digits, no float noise
    (0.036418200000000005 → 0.0364182), and a true minus sign left to the caller."""
    value = float(value)
    if value == 0:
        return "0"
    text = f"{value:.{significant}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


MINUS = "−"


def signed(value, significant: int = SIGNIFICANT) -> str:
    """`number()` with a true minus sign (U+2212), for text read by people: tables, sums."""
    text = number(value, significant)
    return MINUS + text[1:] if text.startswith("-") else text


def element(name: str, shape, index, base: int) -> str:
    """`c1.kernel[0,1]`: a traced value's element, as written in `expected` keys."""
    return name + format_index(display_index(shape, index, base))


def shown_index(shape, index, base: int) -> tuple:
    return display_index(shape, index, base)
