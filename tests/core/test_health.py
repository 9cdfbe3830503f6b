"""When a device counts as online (core.health): the rule the status API, the website
and the operations dashboard share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.health import device_state, silent_after

NOW = datetime(2026, 3, 5, 12, tzinfo=UTC)


def state(kind: str = "air_quality", **given: object) -> str:
    values: dict[str, object] = {
        "status": "active",
        "online": True,
        "last_seen": NOW - timedelta(minutes=1),
        **given,
    }
    return device_state(kind=kind, now=NOW, **values)  # type: ignore[arg-type]


def test_a_device_heard_from_lately_is_online() -> None:
    assert state() == "online"
    assert state(online=None) == "online"  # no status topic: its telemetry speaks for it


def test_silent_after_three_reporting_intervals_by_kind() -> None:
    assert silent_after("air_quality") == timedelta(minutes=15)
    assert silent_after("energy") == timedelta(minutes=15)
    assert silent_after("traffic") == timedelta(minutes=45)
    assert state(last_seen=NOW - timedelta(minutes=15)) == "online"
    assert state(last_seen=NOW - timedelta(minutes=16)) == "silent"
    assert state("traffic", last_seen=NOW - timedelta(minutes=30)) == "online"
    assert state("traffic", last_seen=NOW - timedelta(minutes=46)) == "silent"


def test_offline_by_its_own_word_disabled_and_never_seen() -> None:
    assert state(online=False) == "offline"
    assert state(status="disabled", online=False) == "disabled"
    assert state(last_seen=None) == "never_seen"
    assert state(status="disabled", last_seen=None) == "disabled"
