"""Deterministic randomness, and the smooth curves the signal models are built from.

Every random number is drawn from a generator keyed by (seed, device, quantity, block
of sample indices), so a reading depends only on its own time, never on the window it
was computed in: a live run that produces ten minutes at a time joins a backfill
seamlessly, and an energy register continues across restarts without a false reset.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_BLOCK: Final = 4096  # random draws per generator; keyed by index // _BLOCK


def stream_key(seed: int, *parts: object) -> int:
    """A 64-bit key for one random stream: (seed, device, quantity, …)."""
    text = "\x1f".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def draws(key: int, index: IntArray, kind: str) -> FloatArray:
    """Standard normal (``kind="normal"``) or uniform [0, 1) draws, one per index.

    The draw for an index depends only on the key and the index: each block of `_BLOCK`
    indices has its own generator seeded from (key, block). That is what makes a reading
    independent of the window it is computed in.
    """
    out = np.empty(index.shape, dtype=np.float64)
    if index.size == 0:
        return out
    blocks = index // _BLOCK
    for block in np.unique(blocks):
        rng = np.random.default_rng([key, int(block) + (1 << 40), 0 if kind == "normal" else 1])
        values = rng.standard_normal(_BLOCK) if kind == "normal" else rng.random(_BLOCK)
        where = blocks == block
        out[where] = values[index[where] - block * _BLOCK]
    return out


def ar1(key: int, first: int, count: int, tau_steps: float) -> FloatArray:
    """A stationary AR(1) series with unit variance over indices ``first … first+count-1``.

    Computed as the AR(1) impulse response truncated after six time constants (weight below
    0.25 %), so each value is a fixed weighted sum of its own past innovations: no state to
    carry from one window to the next. The taps are added one at a time over whole arrays,
    the same order for every element, so a value is bit-identical whatever the window.
    """
    if count <= 0:
        return np.empty(0)
    if tau_steps <= 0.2:
        return draws(key, np.arange(first, first + count, dtype=np.int64), "normal")
    phi = math.exp(-1.0 / tau_steps)
    taps = max(1, math.ceil(6 * tau_steps))
    shocks = draws(key, np.arange(first - taps + 1, first + count, dtype=np.int64), "normal")
    out = np.zeros(count)
    weight = 1.0
    for lag in range(taps):
        start = taps - 1 - lag
        out += weight * shocks[start : start + count]
        weight *= phi
    out *= math.sqrt(1.0 - phi * phi)
    return out


def poisson(key: int, index: IntArray, mean: FloatArray) -> FloatArray:
    """Poisson counts around ``mean`` by inversion of one keyed uniform per index (exact
    below a mean of 30, normal approximation with continuity correction above)."""
    uniform = draws(key, index, "uniform")
    counts = np.zeros(mean.shape)
    small = mean < 30
    if small.any():
        lam = mean[small]
        u = uniform[small]
        term = np.exp(-lam)
        cdf = term.copy()
        k = np.zeros(lam.shape)
        for n in range(1, 90):
            below = u > cdf
            if not below.any():
                break
            k += below
            term = term * lam / n
            cdf += term
        counts[small] = k
    large = ~small
    if large.any():
        z = draws(key ^ 0x5F5F5F5F, index[large], "normal")
        counts[large] = np.maximum(np.floor(mean[large] + np.sqrt(mean[large]) * z + 0.5), 0)
    return counts


def logistic(x: FloatArray) -> FloatArray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def bump(x: FloatArray, centre: float, width: float) -> FloatArray:
    return np.exp(-0.5 * ((x - centre) / width) ** 2)


def window(hour: FloatArray, opens: float, closes: float, ramp: float = 0.35) -> FloatArray:
    """0..1: a smooth 'open between these local hours' (people do not arrive at once)."""
    return logistic((hour - opens) / ramp) - logistic((hour - closes) / ramp)
