"""Numbers, dates and times the way each language writes them (Babel's CLDR data):
``12,5`` and ``3. mars kl. 14:00`` in bokmål, ``12.5`` and ``3 March, 14:00`` in
English.  Every time is shown in the city's time zone; the API's are UTC."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from babel import dates, numbers

from web.i18n import Language, locale

#: what a missing number reads as
MISSING = "–"


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time from a /v1 document (``…Z``)."""
    return dt.datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Formats:
    language: Language
    zone: ZoneInfo

    def number(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return MISSING
        pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
        return numbers.format_decimal(value, format=pattern, locale=locale(self.language))

    def integer(self, value: float | None) -> str:
        return self.number(value, 0)

    def percent(self, share: float | None, digits: int = 0) -> str:
        if share is None:
            return MISSING
        # bokmål puts a (non-breaking) space before the sign, English none
        sign = "%" if self.language == "en" else "\u00a0%"
        pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + sign
        return numbers.format_percent(share, format=pattern, locale=locale(self.language))

    def local(self, moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(self.zone)

    def datetime(self, moment: dt.datetime) -> str:
        """``3. mars 2026 kl. 14:00`` / ``3 March 2026, 14:00``."""
        pattern = "d. MMMM y 'kl.' HH:mm" if self.language == "nb" else "d MMMM y, HH:mm"
        return dates.format_datetime(self.local(moment), pattern, locale=locale(self.language))

    def short_datetime(self, moment: dt.datetime) -> str:
        """``3. mars kl. 14:00`` / ``3 March, 14:00``."""
        pattern = "d. MMM 'kl.' HH:mm" if self.language == "nb" else "d MMM, HH:mm"
        return dates.format_datetime(self.local(moment), pattern, locale=locale(self.language))

    def time(self, moment: dt.datetime) -> str:
        return dates.format_datetime(self.local(moment), "HH:mm", locale=locale(self.language))

    def hour(self, start: dt.datetime) -> str:
        """The hour beginning at ``start``: ``14:00–15:00``."""
        return f"{self.time(start)}–{self.time(start + dt.timedelta(hours=1))}"

    def date(self, day: dt.date) -> str:
        """``tirsdag 3. mars`` / ``Tuesday 3 March``."""
        pattern = "EEEE d. MMMM" if self.language == "nb" else "EEEE d MMMM"
        return dates.format_date(day, pattern, locale=locale(self.language))

    def short_date(self, day: dt.date) -> str:
        pattern = "d. MMM y" if self.language == "nb" else "d MMM y"
        return dates.format_date(day, pattern, locale=locale(self.language))

    def age(self, moment: dt.datetime, now: dt.datetime) -> str:
        """How long ago: ``for 5 minutter siden`` / ``5 minutes ago``."""
        return dates.format_timedelta(
            moment - now,
            add_direction=True,
            threshold=1.5,
            locale=locale(self.language),
        )
