"""Rounding as done by hand: on the true value a person has on paper, not on float noise.

A computed float is the paper value plus float noise: 0.48·0.84 − 0.29·(−0.31) + … is
exactly 0.2993 but comes out as 0.29929999999999996, and truncating that gives 0.2992.
The engine knows, for each element, a bound on that noise (`noise`, see layers.EPS); a
number written in the file has none beyond its conversion to binary (half a unit in the
last place: 0.29 is stored as 0.28999999999999998).

The result of rounding to d decimals only changes at multiples of 10^-(d+1) (truncation at
multiples of 10^-d, half_up / half_even at the halves 5·10^-(d+1)).  So: if a multiple of
10^-(d+1) lies within the noise bound of the value (widened by half an ulp), the paper value
is taken to be the nearest such multiple, and that is rounded, in exact decimal arithmetic.
Otherwise no boundary lies within the noise and the float's shortest decimal form decides.
When the noise is half of 10^-(d+1) or more, the float carries no digit at that place:
nothing better than the float itself is known, and it is rounded as it is.
"""
from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

import numpy as np

MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "truncate": ROUND_DOWN}


def paper_value(value: float, decimals: int, noise: float = 0.0) -> Decimal:
    """The decimal `value` stands for, as far as rounding to `decimals` can tell.

    Its shortest decimal form (`repr`) when that has at most decimals+1 decimals (0.29 is
    0.29); else the nearest multiple of 10^-(decimals+1) when it lies within the noise plus
    half an ulp (0.29929999999999996 with noise 1e-16 is 0.2993); else `repr` again: no
    rounding boundary lies within the noise, and any point of it rounds alike."""
    value = float(value)
    # enough precision that quantize never overflows for any finite float
    context = Context(prec=decimals + 330)
    fine = Decimal(1).scaleb(-(decimals + 1))
    shortest = Decimal(repr(value))
    if shortest == shortest.quantize(fine, rounding=ROUND_HALF_EVEN, context=context):
        return shortest
    exact = Decimal(value)
    nearest = exact.quantize(fine, rounding=ROUND_HALF_EVEN, context=context)
    if noise < float(fine) / 2 and abs(exact - nearest) <= Decimal(noise + math.ulp(value) / 2):
        return nearest
    return shortest


def round_number(value: float, decimals: int, mode: str, noise: float = 0.0) -> float:
    """`value` rounded to `decimals` by `mode`, as by hand; `noise` bounds its float noise."""
    quantum = Decimal(1).scaleb(-decimals)
    context = Context(prec=decimals + 330)
    return float(paper_value(value, decimals, noise).quantize(quantum, rounding=MODES[mode], context=context))


def round_array(values: np.ndarray, decimals: int, mode: str, noise: np.ndarray | None = None) -> np.ndarray:
    """Each element rounded by `round_number`; `noise` is the per-element bound (None: exact)."""
    flat = values.reshape(-1).tolist()
    bounds = [0.0] * len(flat) if noise is None else np.broadcast_to(noise, values.shape).reshape(-1).tolist()
    rounded = [round_number(v, decimals, mode, e) for v, e in zip(flat, bounds)]
    return np.array(rounded, dtype=float).reshape(values.shape)
