"""What a public air-quality warning says, in bokmål and English, and the banner the
air-now and station pages show while one is active.

The words come from the website's own catalogue: the level names and the EEA's
health advice are `web.air.LEVELS` (one source for the pages and the warnings), the
sentences around them are marked here and translated in
``translations/nb/LC_MESSAGES/messages.po``.  `CatalogueTexts` gives them to the
warning job (`ingest.warnings`, through `core.warnings.WarningTexts`; the ``smartby``
command wires it in, as ingest may not import the website), which writes them into
each CAP message once, when it is issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from core.rollups import from_epoch_us
from core.warnings import Station, WarningEvent, WarningWords
from web.air import POLLUTANTS, level
from web.formatting import Formats, parse_time
from web.i18n import N_, Language, translations

if TYPE_CHECKING:  # the pages' context; the warning job imports this module without it
    from web.site import PageContext

#: CAP ``language`` of each catalogue (RFC 3066 tags, as MET Norway's warnings use)
CAP_LANGUAGES: dict[Language, str] = {"nb": "no", "en": "en-GB"}

EVENT = N_("Air quality")
SENDER = N_("%(city)s municipality")
AREA = N_("Around the measuring station %(station)s, %(municipality)s")
HEADLINE = N_("%(level)s air quality at %(station)s")
HEADLINE_CLEAR = N_("The air at %(station)s is no longer poor")
HEADLINE_WITHDRAWN = N_("Air-quality warning for %(station)s withdrawn")
ALERT = N_(
    "The European Air Quality Index at the measuring station %(station)s was %(level)s in the "
    "hour starting %(start)s, because of %(pollutant)s (%(value)s µg/m³ as an hourly mean)."
)
ALERT_NO_VALUE = N_(
    "The European Air Quality Index at the measuring station %(station)s was %(level)s in the "
    "hour starting %(start)s."
)
UPDATE = N_("The air has become worse since the warning of %(onset)s.")
CLEAR = N_(
    "The index at %(station)s was %(level)s in the hour starting %(start)s. The warning of "
    "%(onset)s is over."
)
WITHDRAWN = N_(
    "The station %(station)s has had no valid hourly index since %(since)s, so the warning "
    "of %(onset)s is withdrawn. The air quality there is not known."
)
SENSITIVE = N_("Adults and children with lung problems, and adults with heart problems: %(advice)s")


class CatalogueTexts:
    """`core.warnings.WarningTexts` from the website's catalogues: bokmål first."""

    def __init__(self, city: str) -> None:
        self.city = city

    def words(
        self, event: WarningEvent, station: Station, tz: str, public_url: str | None
    ) -> list[WarningWords]:
        return [
            self._words(language, event, station, ZoneInfo(tz), public_url)
            for language in ("nb", "en")
        ]

    def _words(
        self,
        language: Language,
        event: WarningEvent,
        station: Station,
        zone: ZoneInfo,
        public_url: str | None,
    ) -> WarningWords:
        gettext = translations(language).gettext
        formats = Formats(language, zone)
        named = level(event.level)
        level_name = gettext(named.name)
        onset = formats.datetime(from_epoch_us(event.onset_us))
        start = formats.datetime(from_epoch_us(event.hour_us))
        values: dict[str, Any] = {
            "station": station.name,
            "level": level_name.lower(),
            "start": start,
            "onset": onset,
        }
        instruction = ""
        if event.kind in ("alert", "update"):
            headline = gettext(HEADLINE) % {"level": level_name, "station": station.name}
            pollutant = POLLUTANTS.get(event.dominant or "")
            if pollutant is not None and event.concentration is not None:
                description = gettext(ALERT) % {
                    **values,
                    "pollutant": f"{gettext(pollutant.long_name).lower()} ({pollutant.name})",
                    "value": formats.number(event.concentration, 0),
                }
            else:
                description = gettext(ALERT_NO_VALUE) % values
            if event.kind == "update":
                description += " " + gettext(UPDATE) % values
            instruction = (
                gettext(named.general)
                + " "
                + gettext(SENSITIVE) % {"advice": gettext(named.sensitive)}
            )
        elif event.kind == "clear":
            headline = gettext(HEADLINE_CLEAR) % values
            description = gettext(CLEAR) % values
            instruction = gettext(named.general)
        else:
            headline = gettext(HEADLINE_WITHDRAWN) % values
            description = gettext(WITHDRAWN) % {**values, "since": start}
        web = None
        if public_url:
            web = f"{public_url.rstrip('/')}/stations/{station.site_id}?lang={language}"
        return WarningWords(
            language=CAP_LANGUAGES[language],
            event=gettext(EVENT),
            headline=headline,
            description=description,
            instruction=instruction,
            sender_name=gettext(SENDER) % {"city": self.city},
            area=gettext(AREA) % {"station": station.name, "municipality": station.municipality},
            web=web,
        )


# ------------------------------------------------------------------ the pages' banner


@dataclass(frozen=True, slots=True)
class ActiveWarning:
    """One active warning as a page shows it (from /v1/warnings/active)."""

    identifier: str
    site_id: str
    site_name: str
    level: int
    headline: str
    summary: str
    onset: datetime
    cap_url: str

    @property
    def advice(self) -> tuple[str, str]:
        named = level(self.level)
        return named.general, named.sensitive

    @property
    def css(self) -> str:
        return level(self.level).css


def active_warnings(document: dict[str, Any], language: Language) -> list[ActiveWarning]:
    """The active warnings of a /v1/warnings/active document, in the page's language."""
    return [
        ActiveWarning(
            identifier=row["identifier"],
            site_id=row["site_id"],
            site_name=row["site_name"],
            level=int(row["level"]),
            headline=row["headline"][language],
            summary=row["summary"][language],
            onset=parse_time(row["onset"]),
            cap_url=row["cap"],
        )
        for row in document["data"]
    ]


async def page_warnings(context: PageContext, site_id: str | None = None) -> list[ActiveWarning]:
    """The warnings in force (at one station, or all) for a page's banner."""
    document = await context.reader.get("/v1/warnings/active")
    found = active_warnings(document, context.language)
    return [w for w in found if site_id is None or w.site_id == site_id]
