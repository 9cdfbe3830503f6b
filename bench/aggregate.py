"""Rollup throughput of the NumPy core (`core.rollups.partials`), against baselines.

    .venv/bin/python -m bench.aggregate            # 10 M readings (1000 series × 10 000)
    .venv/bin/python -m bench.aggregate --quick    # 1 M readings, same table

Synthetic readings: 1000 series at a one-minute cadence, in arrival order (every series'
reading of a minute, then the next minute — how ingest batches look), values with noise,
a few per cent suspect and failed flags.  For each resolution (1m, 1h, 1d in
Europe/Oslo) the core computes the partials of all readings at once, then in ingest-sized
batches; a plain-Python dict groupby computes the same aggregates on a 1 M subset, checked
against the core's result, and the ratio of the two rates is printed: the ratio is what
carries over between machines.  QC (`core.qc.evaluate_batch`, all five tests) runs on the
same readings batch by batch.  The last line estimates the share of one core that QC and
keeping all three resolutions up to date cost at the ingest budget of 150 000 readings/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core import qc
from core.rollups import RESOLUTIONS, Partials, Resolution, partials

SERIES = 1000
START_US = 1_774_000_000_000_000  # 2026-03-20T09:46:40Z; 10 000 minutes span the DST change
MINUTE_US = 60_000_000
BATCH = 5000  # readings per ingest batch, roughly what one worker commits at a time
INGEST_BUDGET = 150_000  # readings/s, DESIGN.md


def readings(per_series: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    n = SERIES * per_series
    times = np.repeat(START_US + np.arange(per_series, dtype=np.int64) * MINUTE_US, SERIES)
    series = np.tile(np.arange(1, SERIES + 1, dtype=np.int32), per_series)
    values = np.round(10 + 5 * np.sin(times / 3.6e9) + rng.normal(0, 2, n), 1)
    quality = rng.choice(np.array([1, 2, 3, 4], np.int16), n, p=[0.93, 0.03, 0.03, 0.01])
    return series, times, values, quality


def timed(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(first call, best of the following rounds) in seconds.  The first call also pays
    for touching fresh memory; a long-running worker sees the warm figure."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    best = first
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return first, best


def in_batches(
    series: np.ndarray, times: np.ndarray, values: np.ndarray, quality: np.ndarray, res: Resolution
) -> None:
    for i in range(0, len(series), BATCH):
        window = slice(i, i + BATCH)
        partials(series[window], times[window], values[window], quality[window], res)


def qc_in_batches(
    series: np.ndarray, times: np.ndarray, values: np.ndarray, table: qc.QcTable
) -> None:
    """QC as ingest would run it: batch by batch, each with the tail the last one left."""
    tail = None
    for i in range(0, len(series), BATCH):
        window = slice(i, i + BATCH)
        tail = qc.evaluate_batch(
            series[window], times[window], values[window], table, history=tail
        ).tail


_OSLO = ZoneInfo("Europe/Oslo")
_WIDTH = {"1m": MINUTE_US, "1h": 60 * MINUTE_US}


def python_groupby(
    series: list[int], times: list[int], values: list[float], quality: list[int], res: Resolution
) -> dict[tuple[int, int], list[float]]:
    """The same aggregates the obvious way: a dict per (series, bucket), a loop per reading."""
    groups: dict[tuple[int, int], list[float]] = {}
    width = _WIDTH.get(res)
    for s, t, v, q in zip(series, times, values, quality, strict=True):
        if q == 4:
            continue
        if width is not None:
            bucket = t - t % width
        else:
            local = datetime.fromtimestamp(t / 1e6, _OSLO)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            bucket = int(midnight.timestamp()) * 1_000_000
        good = 1 if q in (1, 2) else 0
        row = groups.get((s, bucket))
        if row is None:
            groups[(s, bucket)] = [1, good, v, v * v, v, v, t, v, t, v]
            continue
        row[0] += 1
        row[1] += good
        row[2] += v
        row[3] += v * v
        row[4] = min(row[4], v)
        row[5] = max(row[5], v)
        if (t, v) < (row[6], row[7]):
            row[6], row[7] = t, v
        if (t, v) > (row[8], row[9]):
            row[8], row[9] = t, v
    return groups


def check(core: Partials, baseline: dict[tuple[int, int], list[float]]) -> None:
    if len(core) != len(baseline):
        raise SystemExit(f"core has {len(core)} groups, the baseline {len(baseline)}")
    keys = list(zip(core.series_id.tolist(), core.bucket.tolist(), strict=True))
    expected: npt.NDArray[np.float64] = np.array([baseline[k] for k in keys])
    got = np.column_stack(
        [
            core.count,
            core.good_count,
            core.sum,
            core.sum_sq,
            core.min,
            core.max,
            core.first_time,
            core.first_value,
            core.last_time,
            core.last_value,
        ]
    ).astype(np.float64)
    if not np.allclose(got, expected, rtol=1e-9):
        raise SystemExit("core and baseline disagree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 M readings instead of 10 M")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    per_series = 1000 if args.quick else 10_000
    series, times, values, quality = readings(per_series)
    n = len(series)
    subset = min(n, 1_000_000)
    py_args = (
        series[:subset].tolist(),
        times[:subset].tolist(),
        values[:subset].tolist(),
        quality[:subset].tolist(),
    )
    print(f"{n:,} readings: {SERIES} series × {per_series:,}, one a minute, in arrival order")
    print(
        f"{'res':<4} {'groups':>10} {'core cold':>13} {'core warm':>13}"
        f" {f'batches of {BATCH}':>16} {'python (1 M)':>13} {'warm/python':>12}"
    )
    cpu_per_reading = 0.0
    for res in RESOLUTIONS:
        result = partials(series, times, values, quality, res)
        first, best = timed(partial(partials, series, times, values, quality, res), args.rounds)
        _, batched = timed(partial(in_batches, series, times, values, quality, res), 1)
        start = time.perf_counter()
        baseline = python_groupby(*py_args, res)
        python_s = time.perf_counter() - start
        check(
            partials(series[:subset], times[:subset], values[:subset], quality[:subset], res),
            baseline,
        )
        warm_rate, python_rate = n / best, subset / python_s
        cpu_per_reading += batched / n
        print(
            f"{res:<4} {len(result):>10,} {n / first:>11,.0f}/s {warm_rate:>11,.0f}/s"
            f" {n / batched:>14,.0f}/s {python_rate:>11,.0f}/s {warm_rate / python_rate:>11.0f}x"
        )
    # QC on the same readings, every series configured as one of the catalogue's metrics
    keys = sorted(qc.DEFAULT_QC)
    table = qc.QcTable.build({i: qc.DEFAULT_QC[keys[i % len(keys)]] for i in range(1, SERIES + 1)})
    _, qc_s = timed(partial(qc_in_batches, series, times, values, table), 1)
    print(f"QC, all five tests, {BATCH}-reading batches with a tail: {n / qc_s:,.0f} readings/s")
    print(
        f"at the ingest budget of {INGEST_BUDGET:,} readings/s: rollups (all three resolutions)"
        f" {INGEST_BUDGET * cpu_per_reading:.1%} of one core, QC {INGEST_BUDGET * qc_s / n:.1%}"
    )

    # TODO(lead): pandas and SQL comparisons on the same readings (issue 5, item 4):
    #   * pandas: DataFrame(series, time, value, quality) → groupby([series, bucket]) with
    #     the same aggregates (dev-only import; pandas is not a runtime dependency);
    #   * TimescaleDB: COPY the readings into a hypertable (time it: "including getting
    #     the data there"), then time_bucket('1 hour' / '1 day', time, 'Europe/Oslo')
    #     GROUP BY series_id, bucket;
    #   * the ingest rate with and without QC + rollups in the worker.
    #   Print each as a rate and as a ratio to the core's warm rate above.


if __name__ == "__main__":
    main()
