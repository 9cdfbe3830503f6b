"""Numbers and times as each language writes them, in the city's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from web.formatting import Formats

OSLO = ZoneInfo("Europe/Oslo")
NB = Formats("nb", OSLO)
EN = Formats("en", OSLO)


def test_numbers() -> None:
    assert NB.number(1234.56) == "1\xa0234,6"
    assert EN.number(1234.56) == "1,234.6"
    assert NB.integer(None) == EN.number(None) == "–"
    assert NB.percent(0.123) == "12\xa0%"
    assert EN.percent(0.123) == "12%"


def test_times_are_local_and_spelled_per_language() -> None:
    # 13:00 UTC is 14:00 in Oslo in winter, 15:00 in summer
    winter = datetime(2026, 1, 15, 13, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 13, tzinfo=UTC)
    assert NB.hour(winter) == "14:00–15:00"
    assert EN.hour(summer) == "15:00–16:00"
    assert NB.datetime(winter) == "15. januar 2026 kl. 14:00"
    assert EN.datetime(winter) == "15 January 2026, 14:00"
    assert NB.date(date(2026, 3, 3)) == "tirsdag 3. mars"
    assert EN.date(date(2026, 3, 3)) == "Tuesday 3 March"


def test_ages() -> None:
    now = datetime(2026, 1, 15, 13, tzinfo=UTC)
    assert NB.age(now - timedelta(minutes=5), now) == "for 5 minutter siden"
    assert EN.age(now - timedelta(minutes=5), now) == "5 minutes ago"
