"""The warning rules of core/warnings.py on hand-made hourly index series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from core.rollups import HOUR_US, epoch_us
from core.warnings import HourlyIndex, StationState, advance, first_state

T0 = datetime(2026, 1, 9, 6, tzinfo=UTC)
CLEAR_AFTER = 3 * HOUR_US
#: for series looked at all at once (an hour older than clear_after starts nothing)
LONG = 24 * HOUR_US


def series(levels: list[int | None], start: datetime = T0) -> HourlyIndex:
    """One index per hour from ``start``; None: no valid index that hour."""
    hours = [epoch_us(start) + i * HOUR_US for i, lv in enumerate(levels) if lv is not None]
    values = [lv for lv in levels if lv is not None]
    return HourlyIndex(
        np.array(hours, np.int64),
        np.array(values, np.int8),
        ["pm10"] * len(values),
        np.array([40.0 * v for v in values], np.float64),
    )


def after(hours: float) -> int:
    """``now`` once the index of hour n (from T0) is settled: n+1 hours and 6 minutes on."""
    return epoch_us(T0 + timedelta(hours=hours, minutes=6))


def start() -> StationState:
    return StationState(epoch_us(T0))


def kinds(events: list) -> list[tuple[str, int, int]]:
    return [(e.kind, (e.hour_us - epoch_us(T0)) // HOUR_US, e.level) for e in events]


def test_an_episode_is_one_alert_and_one_all_clear() -> None:
    state, events = advance(start(), series([2, 4, 4, 4, 3, 2]), after(6), LONG)
    assert kinds(events) == [("alert", 1, 4), ("clear", 4, 3)]
    assert events[0].onset_us == events[1].onset_us == epoch_us(T0) + HOUR_US
    assert [e.msg_type for e in events] == ["Alert", "Cancel"]
    assert state.episode is None


def test_the_same_hours_again_issue_nothing() -> None:
    hours = series([2, 4, 4, 3])
    state, first = advance(start(), hours, after(4), CLEAR_AFTER)
    again, second = advance(state, hours, after(4), CLEAR_AFTER)
    later, third = advance(again, hours, after(5), CLEAR_AFTER)
    assert len(first) == 2
    assert second == []
    assert third == []
    assert later.checked_until_us >= again.checked_until_us


def test_hour_by_hour_gives_the_same_messages_as_all_at_once() -> None:
    levels = [1, 4, 5, 5, 6, 4, 2]
    _, at_once = advance(start(), series(levels), after(len(levels)), LONG)
    state, step_by_step = start(), []
    for n in range(1, len(levels) + 1):
        state, events = advance(state, series(levels[:n]), after(n), CLEAR_AFTER)
        step_by_step += events
    assert (
        kinds(at_once)
        == kinds(step_by_step)
        == [
            ("alert", 1, 4),
            ("update", 2, 5),
            ("update", 4, 6),
            ("clear", 6, 2),
        ]
    )


def test_a_level_that_falls_but_stays_poor_says_nothing() -> None:
    _, events = advance(start(), series([5, 4, 5, 4, 3]), after(5), LONG)
    assert kinds(events) == [("alert", 0, 5), ("clear", 4, 3)]


def test_an_hour_is_looked_at_only_once_it_is_settled() -> None:
    hours = series([4])
    early = epoch_us(T0 + timedelta(minutes=64))  # the hour ended 4 minutes ago
    state, events = advance(start(), hours, early, CLEAR_AFTER)
    assert events == []
    assert state.checked_until_us == epoch_us(T0)
    _, events = advance(state, hours, after(1), CLEAR_AFTER)
    assert kinds(events) == [("alert", 0, 4)]


def test_a_silent_station_has_its_warning_withdrawn() -> None:
    state, events = advance(start(), series([4]), after(1), CLEAR_AFTER)
    assert kinds(events) == [("alert", 0, 4)]
    state, events = advance(state, series([4]), after(3), CLEAR_AFTER)
    assert events == []
    assert state.episode is not None
    state, events = advance(state, series([4]), after(4), CLEAR_AFTER)
    assert kinds(events) == [("withdraw", 1, 4)]
    assert state.episode is None


def test_a_poor_hour_after_a_long_gap_starts_a_new_episode() -> None:
    state, events = advance(start(), series([4]), after(1), CLEAR_AFTER)
    _, later = advance(state, series([4, None, None, None, None, 5]), after(6), CLEAR_AFTER)
    assert kinds(events + later) == [("alert", 0, 4), ("withdraw", 1, 4), ("alert", 5, 5)]


def test_history_does_not_start_a_warning() -> None:
    """A backfill, or a station seen for the first time, warns about now, not the past."""
    levels = [4, 4, 3, 3, 3, 3, 3]
    now = after(7)
    state, events = advance(first_state(now, CLEAR_AFTER), series(levels), now, CLEAR_AFTER)
    assert events == []
    _, events = advance(state, series([*levels, 4]), after(8), CLEAR_AFTER)
    assert kinds(events) == [("alert", 7, 4)]


def test_an_episode_open_before_the_horizon_still_clears() -> None:
    """A worker down for longer than clear_after: the open episode still gets its end."""
    state, _ = advance(start(), series([4]), after(1), CLEAR_AFTER)
    _, events = advance(state, series([4, 4, 3]), after(8), CLEAR_AFTER)
    assert kinds(events) == [("clear", 2, 3)]
