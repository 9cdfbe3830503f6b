"""Throughput of core.decode for the three payload forms, against bare parsing.

Prints decoded records per second for a 10-record SenML JSON pack, a single-reading plain
JSON object and a 10-record SenML CBOR pack, and for each the ratio to the bare parser
(orjson.loads / cbor2.loads) on the same bytes, measured in the same run: the ratio is what
carries over between machines. Run: ``python -m bench.decode``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import cbor2
import orjson

from core.decode import decode

NOW = 1_760_000_000.0
ROUNDS = 25  # many short rounds, best kept: other work on the core only slows some


def _senml_records(now: float) -> list[dict[str, object]]:
    """One air-quality station's pack: 10 measurements over the last minutes (RFC 8428)."""
    metrics = [
        ("pm25", "ug/m3", 7.4),
        ("pm10", "ug/m3", 13.9),
        ("no2", "ug/m3", 21.7),
        ("o3", "ug/m3", 54.2),
        ("temperature", "Cel", -3.5),
        ("humidity", "%RH", 81.0),
        ("pressure", "hPa", 1003.2),
        ("pm25", "ug/m3", 7.9),
        ("pm10", "ug/m3", 14.3),
        ("no2", "ug/m3", 22.4),
    ]
    records: list[dict[str, object]] = []
    for i, (name, unit, value) in enumerate(metrics):
        record: dict[str, object] = {"n": name, "u": unit, "v": value, "t": float(i * 6)}
        if i == 0:
            record |= {"bn": "urn:dev:mac:0024befffe804ff1:", "bt": now - 60.0}
        records.append(record)
    return records


def _cbor_records(records: list[dict[str, object]]) -> list[dict[int, object]]:
    labels = {"bn": -2, "bt": -3, "n": 0, "u": 1, "v": 2, "t": 6}
    return [{labels[key]: value for key, value in record.items()} for record in records]


def _rate(run: Callable[[], object], per_call: int, seconds: float = 0.05) -> float:
    """Best-of-ROUNDS calls per second × ``per_call``, each round lasting about ``seconds``."""
    calls = 1
    while True:  # size a batch to about `seconds`
        start = time.perf_counter()
        for _ in range(calls):
            run()
        elapsed = time.perf_counter() - start
        if elapsed > seconds:
            break
        calls *= 2
    best = elapsed
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, time.perf_counter() - start)
    return calls * per_call / best


def main() -> None:
    records = _senml_records(NOW)
    cases: list[tuple[str, bytes, Callable[[bytes], object], int]] = [
        ("SenML JSON, 10-record pack", orjson.dumps(records), orjson.loads, 10),
        (
            "plain JSON, single reading",
            orjson.dumps({"time": "2025-10-09T08:53:20Z", "pm25": 7.4}),
            orjson.loads,
            1,
        ),
        ("SenML CBOR, 10-record pack", cbor2.dumps(_cbor_records(records)), cbor2.loads, 10),
    ]
    print(f"{'payload':<30} {'bytes':>6} {'records/s':>12} {'msg/s':>10} {'parse-only ratio':>17}")
    for label, payload, parse, per_message in cases:
        result = decode(payload, NOW)
        if len(result.readings) != per_message or result.rejected:
            raise SystemExit(f"{label}: unexpected decode result {result}")
        decoded = _rate(partial(decode, payload, NOW), per_message)
        parsed = _rate(partial(parse, payload), per_message)
        print(
            f"{label:<30} {len(payload):>6} {decoded:>12,.0f} {decoded / per_message:>10,.0f}"
            f" {decoded / parsed:>16.2f}x"
        )
    print("(ratio = decode throughput / bare parser throughput on the same bytes)")


if __name__ == "__main__":
    main()
