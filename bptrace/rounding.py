"""Rounding as done by hand: on the decimal digits a person sees, not on binary floats.

0.29 truncated to 2 decimals is 0.29, although the float 0.29 is 0.28999999999999998;
so each number goes through its shortest decimal form (`repr`) first.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

import numpy as np

MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "truncate": ROUND_DOWN}


def round_number(value: float, decimals: int, mode: str) -> float:
    quantum = Decimal(1).scaleb(-decimals)
    # enough precision that quantize never overflows for any finite float
    context = Context(prec=decimals + 320)
    return float(Decimal(repr(float(value))).quantize(quantum, rounding=MODES[mode], context=context))


def round_array(values: np.ndarray, decimals: int, mode: str) -> np.ndarray:
    flat = [round_number(v, decimals, mode) for v in values.reshape(-1).tolist()]
    return np.array(flat, dtype=float).reshape(values.shape)
