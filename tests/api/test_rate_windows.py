"""The moving-window counts behind the rate limits (`api.edge.MovingWindows`): at most
the limit's hits in any window, the wait until the oldest leaves it, and quiet
clients forgotten only once their window is over."""

from __future__ import annotations

from limits import parse

from api.edge import MovingWindows

PER_MINUTE = parse("3/minute")
PER_HOUR = parse("2/hour")


def test_the_hit_past_the_limit_waits_for_the_oldest_to_leave_the_window() -> None:
    windows = MovingWindows()
    assert [windows.hit(PER_MINUTE, "a", t) for t in (0.0, 10.0, 20.0)] == [None] * 3
    assert windows.hit(PER_MINUTE, "a", 30.0) == 30.0  # the hit at 0 leaves at 60
    assert windows.hit(PER_MINUTE, "b", 30.0) is None  # another client counts apart
    assert windows.hit(PER_MINUTE, "a", 60.0) is None
    assert windows.hit(PER_MINUTE, "a", 61.0) == 9.0  # refused hits do not count


def test_a_sweep_forgets_quiet_clients_only_after_their_own_window() -> None:
    windows = MovingWindows()
    assert windows.hit(PER_HOUR, "key:k", 0.0) is None
    assert windows.hit(PER_HOUR, "key:k", 1.0) is None
    assert windows.hit(PER_MINUTE, "a", 0.0) is None
    # past a minute: the minute's client is swept, the hour's still counts both hits
    assert windows.hit(PER_MINUTE, "c", 120.0) is None
    assert ("3 per 1 minute", "a") not in windows.hits
    assert windows.hit(PER_HOUR, "key:k", 120.0) == 3480.0
