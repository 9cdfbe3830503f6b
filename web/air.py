"""What the air-quality pages say about a number: the European Air Quality Index
levels in words and colours with the EEA's health advice, what each pollutant is,
and the legal limits of the Norwegian Pollution Regulations.

Strings are marked with `N_` and translated where they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.indicators import AQI_BANDS, AQI_LEVEL_NAMES
from web.i18n import N_


@dataclass(frozen=True, slots=True)
class Level:
    """One level of the EEA index: its number (1 good … 6 extremely poor), name and
    the EEA's advice for the general population and for sensitive groups."""

    number: int
    name: str
    general: str
    sensitive: str

    @property
    def css(self) -> str:
        return f"level-{self.number}"


#: EEA, "European Air Quality Index": the levels and their health messages (EEA
#: Help Center FAQ "What do the values of the index mean?"; sensitive populations are
#: adults and children with lung problems and adults with heart problems).  The names
#: are core.indicators.AQI_LEVEL_NAMES, as /v1/aqi labels them.
LEVELS: tuple[Level, ...] = (
    Level(
        1,
        N_("Good"),
        N_("The air quality is good. Enjoy your usual outdoor activities."),
        N_("The air quality is good. Enjoy your usual outdoor activities."),
    ),
    Level(
        2,
        N_("Fair"),
        N_("Enjoy your usual outdoor activities."),
        N_("Enjoy your usual outdoor activities."),
    ),
    Level(
        3,
        N_("Moderate"),
        N_("Enjoy your usual outdoor activities."),
        N_("Consider reducing intense outdoor activities, if you experience symptoms."),
    ),
    Level(
        4,
        N_("Poor"),
        N_(
            "Consider reducing intense activities outdoors, if you experience symptoms "
            "such as sore eyes, a cough or sore throat."
        ),
        N_(
            "Consider reducing physical activities, particularly outdoors, especially if "
            "you experience symptoms."
        ),
    ),
    Level(
        5,
        N_("Very poor"),
        N_(
            "Consider reducing intense activities outdoors, if you experience symptoms "
            "such as sore eyes, a cough or sore throat."
        ),
        N_(
            "Reduce physical activities, particularly outdoors, especially if you "
            "experience symptoms."
        ),
    ),
    Level(
        6,
        N_("Extremely poor"),
        N_("Reduce physical activities outdoors."),
        N_("Avoid physical activities outdoors."),
    ),
)
assert tuple(level.name for level in LEVELS) == AQI_LEVEL_NAMES


def level(number: int) -> Level:
    return LEVELS[number - 1]


@dataclass(frozen=True, slots=True)
class Pollutant:
    key: str
    name: str  # as chemists and the API write it
    long_name: str
    note: str  # what it is and where it comes from, in plain words


#: the pollutants of the index, particles first (core.indicators.POLLUTANTS' order)
POLLUTANTS: dict[str, Pollutant] = {
    p.key: p
    for p in (
        Pollutant(
            "pm25",
            "PM2.5",
            N_("Fine particles"),
            N_(
                "Particles smaller than 2.5 micrometres, small enough to reach deep into "
                "the lungs and the blood. In Narvik they come mostly from wood-burning "
                "stoves on cold days, from exhaust, and from far away with the wind."
            ),
        ),
        Pollutant(
            "pm10",
            "PM10",
            N_("Particles"),
            N_(
                "Particles smaller than 10 micrometres. In Norwegian towns most of them "
                "are road dust: studded tyres grind the asphalt in winter and spring, "
                "and dry roads let the dust fly. Sanding and salting add to it."
            ),
        ),
        Pollutant(
            "no2",
            "NO₂",
            N_("Nitrogen dioxide"),
            N_(
                "A gas from burning fuel, above all diesel engines in traffic, and ships "
                "at berth. It irritates the airways; levels are highest by busy roads on "
                "cold, still winter days."
            ),
        ),
        Pollutant(
            "o3",
            "O₃",
            N_("Ozone"),
            N_(
                "Ground-level ozone forms in sunlight from other pollutants, often far "
                "away. It is usually highest on sunny spring and summer afternoons, and "
                "lower by busy roads, where exhaust uses it up."
            ),
        ),
        Pollutant(
            "so2",
            "SO₂",
            N_("Sulphur dioxide"),
            N_(
                "A gas from burning fuel that contains sulphur: ships' engines and "
                "industry. Near the harbour it rises when ships are at berth."
            ),
        ),
    )
}
#: the four the station page always speaks of, measured or not (the issue's list)
MAIN_POLLUTANTS = ("pm25", "pm10", "no2", "o3")


def bands(key: str) -> list[tuple[float, Level]]:
    """The index bands of a pollutant: (lower bound in µg/m³, level), from Good up."""
    return [(0.0, LEVELS[0])] + [(bound, LEVELS[i + 1]) for i, bound in enumerate(AQI_BANDS[key])]


@dataclass(frozen=True, slots=True)
class LegalLimit:
    """A limit value for the protection of human health (forurensningsforskriften
    § 7-9 since 1 July 2022; § 7-6 before): ``mean`` over ``period`` must not exceed
    ``value`` µg/m³ more than ``allowed`` times in a calendar year."""

    pollutant: str
    period: str  # "hour", "day" or "year"
    value: float
    allowed: int | None  # exceedances allowed per calendar year; None: an annual mean


#: the limit values for PM10, PM2.5, NO2 and SO2 (ozone has target values and an
#: information threshold instead, in the regulation's ozone section)
LEGAL_LIMITS: tuple[LegalLimit, ...] = (
    LegalLimit("pm10", "day", 50.0, 30),
    LegalLimit("pm10", "year", 25.0, None),
    LegalLimit("pm25", "year", 15.0, None),
    LegalLimit("no2", "hour", 200.0, 18),
    LegalLimit("no2", "year", 40.0, None),
    LegalLimit("so2", "hour", 350.0, 24),
    LegalLimit("so2", "day", 125.0, 3),
)
#: ozone's information threshold (hourly mean, µg/m³): the public must be told
OZONE_INFORMATION_THRESHOLD = 180.0
#: the share of a period's readings a mean needs to count against a limit: the EU air
#: quality directive's data-capture rule for hourly and daily values
MIN_COVERAGE = 0.75
