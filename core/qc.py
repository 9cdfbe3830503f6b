"""Quality control flags (QARTOD), computed over whole arrays.

Flag values follow the QARTOD convention (IOOS, "Manual for Real-Time Quality
Control"): 1 pass/good, 2 not evaluated, 3 suspect, 4 fail, 9 missing.  A reading's
stored flag is the worst of the tests that ran on it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

GOOD = 1
NOT_EVALUATED = 2
SUSPECT = 3
FAIL = 4
MISSING = 9

Flags = npt.NDArray[np.int16]
#: a bound for every reading (an array aligned with the values) or one for all
Bound = float | npt.NDArray[np.float64]


def gross_range(
    values: npt.NDArray[np.float64],
    fail_min: Bound,
    fail_max: Bound,
    suspect_min: Bound | None = None,
    suspect_max: Bound | None = None,
) -> Flags:
    """QARTOD gross range test: outside the physical bounds fails, outside the
    (optional, per-device) operational bounds is suspect, otherwise good.

    Bounds may be scalars or arrays aligned with ``values`` (one row per reading,
    each with its own metric's bounds), so a mixed batch is checked in one pass.
    """
    flags = np.full(values.shape, GOOD, dtype=np.int16)
    if suspect_min is not None and suspect_max is not None:
        flags[(values < suspect_min) | (values > suspect_max)] = SUSPECT
    flags[(values < fail_min) | (values > fail_max)] = FAIL
    return flags
