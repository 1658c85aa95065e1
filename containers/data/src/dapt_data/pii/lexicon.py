"""The word lists behind the running-text name detector (`pii.names`), from maintained packages.

- Person names: the first and last names of every locale of Faker's person providers (80+
  locales; Latin script, and Cyrillic and Greek romanised with `anyascii`), plus the project's
  own gazetteer (`pii.gazetteer`).
- Ordinary words: the lower-case entries of Webster's Second International (`web2`, 236,000
  words) as packaged by `english-words`. A name that is also an ordinary word ("Will", "Grace",
  "Mark", "Rose", "Chase") is ambiguous: it counts only beside an unambiguous name or after a
  cue phrase. Proper nouns are capitalised in web2, so "Margaret" is not an ordinary word.
- Places: the country, state and city names that Faker's address providers list, and the
  project's own place names below: a lone name that is also a place ("Sydney", "Florence",
  "San Francisco") is not taken as a person.

Faker is a test-data generator, not a detector; it is used here as the largest maintained,
multi-locale list of given names and surnames on PyPI that installs in a few MB (names-dataset
holds more but takes 28 s and 1.9 GB to load, see docs/benchmarks.md). Each list is built once
per process (about 1 s) on first use.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from collections.abc import Iterable

from anyascii import anyascii
from english_words import get_english_words_set

from dapt_data.pii.gazetteer import AMBIGUOUS_FIRST_NAMES, FIRST_NAMES


@functools.cache
def first_names() -> frozenset[str]:
    """Lower-case given names (Faker's locales and the gazetteer)."""
    return frozenset(_faker_names("first")) | FIRST_NAMES | AMBIGUOUS_FIRST_NAMES


@functools.cache
def last_names() -> frozenset[str]:
    """Lower-case surnames (Faker's locales)."""
    return frozenset(_faker_names("last"))


@functools.cache
def ordinary_words() -> frozenset[str]:
    """Lower-case English words (web2's lower-case entries) and the gazetteer's ambiguous names."""
    words = get_english_words_set(["web2"], lower=False, alpha=True)
    return frozenset(w for w in words if w.islower()) | AMBIGUOUS_FIRST_NAMES


@functools.cache
def places() -> frozenset[str]:
    """Lower-case place names: Faker's listed countries, states and cities, and `EXTRA_PLACES`."""
    found: set[str] = set(EXTRA_PLACES)
    for provider in _providers("faker.providers.address"):
        for attr in PLACE_ATTRIBUTES:
            found.update(_latin(getattr(provider, attr, ())))
    return frozenset(found)


@functools.cache
def countries() -> frozenset[str]:
    """Lower-case country names in the languages of Faker's address providers ("españa")."""
    found: set[str] = set(ENDONYMS)
    for provider in _providers("faker.providers.address"):
        found.update(_latin(getattr(provider, "countries", ())))
    return frozenset(found)


def _faker_names(kind: str) -> set[str]:
    found: set[str] = set()
    for locale, provider in _providers_by_locale("faker.providers.person"):
        for attr in dir(provider):
            if attr.startswith((f"{kind}_name", f"{kind}_romanized_name")):
                values = getattr(provider, attr)
                for name in [*_latin(values), *_romanized(values, locale)]:
                    # "de la Cruz", "Al-Hassan": each part is looked up on its own.
                    found.update(p for p in re.split(r"[\s-]+", name) if len(p) >= MIN_PART)
    return found


def _providers(package: str) -> Iterable[type]:
    return (provider for _, provider in _providers_by_locale(package))


def _providers_by_locale(package: str) -> Iterable[tuple[str, type]]:
    root = importlib.import_module(package)
    for module in pkgutil.iter_modules(root.__path__):
        provider = getattr(importlib.import_module(f"{package}.{module.name}"), "Provider", None)
        if isinstance(provider, type):
            yield module.name, provider


def _romanized(values: object, locale: str) -> Iterable[str]:
    """Cyrillic and Greek names as they are written in Latin letters ("Оксана" -> "oksana").

    anyascii's transliteration follows Russian usage; Ukrainian names are also written with
    Ukraine's national romanisation for the letters that differ (ghe -> h, i -> y: "Kateryna").
    Scripts whose transliteration loses the vowels (Devanagari, Arabic) are left out."""
    if isinstance(values, dict):
        values = list(values)
    if not isinstance(values, list | tuple | set | frozenset):
        return
    for value in values:
        if not isinstance(value, str) or not _CYRILLIC_OR_GREEK.fullmatch(value):
            continue
        yield anyascii(value).replace("'", "").lower()
        if locale.startswith("uk"):
            yield anyascii(value.translate(UKRAINIAN)).replace("'", "").lower()


def _latin(values: object) -> Iterable[str]:
    """The Latin-script strings of a Faker list or weighted dict, lower-cased."""
    if isinstance(values, dict):
        values = list(values)
    if not isinstance(values, list | tuple | set | frozenset):
        return ()
    return (v.lower() for v in values if isinstance(v, str) and _LATIN.fullmatch(v))


_CYRILLIC_OR_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u04ff' -]+")
UKRAINIAN = str.maketrans({"\u0433": "h", "\u0413": "H", "\u0438": "y", "\u0418": "Y"})
"""Ukraine's national romanisation where it differs from anyascii's: ghe -> h, i -> y."""
_LATIN = re.compile(r"[A-Za-zÀ-ÖØ-öø-ɏ'\u2019. -]+")
MIN_PART = 2
ENDONYMS = frozenset(
    {
        # Countries as their own people write them, where Faker's lists have only exonyms.
        "polska",
        "česko",
        "česká republika",
        "slovensko",
        "magyarország",
        "românia",
        "österreich",
        "schweiz",
        "suisse",
        "svizzera",
        "sverige",
        "danmark",
        "norge",
        "suomi",
        "éire",
        "belgië",
        "belgique",
        "türkiye",
        "hrvatska",
        "srbija",
        "slovenija",
        "eesti",
        "latvija",
        "lietuva",
        "ελλάδα",
        "nihon",
        "nippon",
        "bharat",
        "méxico",
        "perú",
    }
)
PLACE_ATTRIBUTES = ("countries", "states", "cities", "city_names", "provinces", "regions")
EXTRA_PLACES = frozenset(
    {
        # Capitals and large cities, and cities that are also given names, which Faker's lists
        # (many of them generated, not real) do not all carry.
        "abu dhabi",
        "abuja",
        "accra",
        "adelaide",
        "addis ababa",
        "alexandria",
        "algiers",
        "almaty",
        "amman",
        "amsterdam",
        "ankara",
        "antwerp",
        "athens",
        "atlanta",
        "auckland",
        "austin",
        "baghdad",
        "baku",
        "bangalore",
        "bangkok",
        "barcelona",
        "beijing",
        "beirut",
        "belfast",
        "belgrade",
        "bengaluru",
        "berlin",
        "bogota",
        "bogotá",
        "boston",
        "brasilia",
        "brasília",
        "bratislava",
        "brisbane",
        "brooklyn",
        "brussels",
        "bucharest",
        "budapest",
        "buenos aires",
        "cairo",
        "calgary",
        "canberra",
        "cape town",
        "caracas",
        "casablanca",
        "charlotte",
        "chelsea",
        "chennai",
        "chicago",
        "colombo",
        "copenhagen",
        "dakar",
        "dallas",
        "damascus",
        "dar es salaam",
        "delhi",
        "denver",
        "dhaka",
        "doha",
        "dubai",
        "dublin",
        "durban",
        "edinburgh",
        "florence",
        "frankfurt",
        "geneva",
        "georgia",
        "glasgow",
        "guadalajara",
        "hamburg",
        "hanoi",
        "harare",
        "havana",
        "helsinki",
        "ho chi minh city",
        "hong kong",
        "houston",
        "hyderabad",
        "istanbul",
        "jakarta",
        "jeddah",
        "jerusalem",
        "johannesburg",
        "jordan",
        "kabul",
        "kampala",
        "karachi",
        "kathmandu",
        "khartoum",
        "kigali",
        "kinshasa",
        "kolkata",
        "kraków",
        "kuala lumpur",
        "kyiv",
        "kyoto",
        "lagos",
        "lahore",
        "las vegas",
        "lima",
        "lincoln",
        "lisbon",
        "ljubljana",
        "london",
        "los angeles",
        "luanda",
        "lusaka",
        "lyon",
        "madison",
        "madrid",
        "manchester",
        "manila",
        "maputo",
        "marrakech",
        "marseille",
        "medellín",
        "melbourne",
        "mexico city",
        "miami",
        "milan",
        "minsk",
        "mombasa",
        "montevideo",
        "montreal",
        "moscow",
        "mumbai",
        "munich",
        "muscat",
        "nairobi",
        "naples",
        "new delhi",
        "new york",
        "nice",
        "osaka",
        "oslo",
        "ottawa",
        "paris",
        "perth",
        "philadelphia",
        "phoenix",
        "porto",
        "prague",
        "pretoria",
        "quito",
        "rabat",
        "reykjavik",
        "riga",
        "rio de janeiro",
        "riyadh",
        "rome",
        "rotterdam",
        "san diego",
        "san francisco",
        "santiago",
        "sao paulo",
        "são paulo",
        "sarajevo",
        "seattle",
        "seoul",
        "seville",
        "shanghai",
        "shenzhen",
        "singapore",
        "sofia",
        "stockholm",
        "stuttgart",
        "sydney",
        "taipei",
        "tallinn",
        "tashkent",
        "tbilisi",
        "tehran",
        "tel aviv",
        "tirana",
        "tokyo",
        "toronto",
        "tunis",
        "turin",
        "valencia",
        "vancouver",
        "victoria",
        "vienna",
        "vilnius",
        "virginia",
        "warsaw",
        "washington",
        "wellington",
        "yerevan",
        "zagreb",
        "zurich",
    }
)
