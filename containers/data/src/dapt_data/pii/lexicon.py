"""The word lists behind the running-text name detector (`pii.names`), from maintained packages.

- Person names: the first and last names of every locale of Faker's person providers (about
  21,000 first names and 22,000 surnames from 80+ locales, Latin script only), plus the
  project's own gazetteer (`pii.gazetteer`).
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


def _faker_names(kind: str) -> set[str]:
    found: set[str] = set()
    for provider in _providers("faker.providers.person"):
        for attr in dir(provider):
            if attr.startswith((f"{kind}_name", f"{kind}_romanized_name")):
                for name in _latin(getattr(provider, attr)):
                    # "de la Cruz", "Al-Hassan": each part is looked up on its own.
                    found.update(p for p in re.split(r"[\s-]+", name) if len(p) >= MIN_PART)
    return found


def _providers(package: str) -> Iterable[type]:
    root = importlib.import_module(package)
    for module in pkgutil.iter_modules(root.__path__):
        provider = getattr(importlib.import_module(f"{package}.{module.name}"), "Provider", None)
        if isinstance(provider, type):
            yield provider


def _latin(values: object) -> Iterable[str]:
    """The Latin-script strings of a Faker list or weighted dict, lower-cased."""
    if isinstance(values, dict):
        values = list(values)
    if not isinstance(values, list | tuple | set | frozenset):
        return ()
    return (v.lower() for v in values if isinstance(v, str) and _LATIN.fullmatch(v))


_LATIN = re.compile(r"[A-Za-zÀ-ÖØ-öø-ɏ'\u2019. -]+")
MIN_PART = 2
PLACE_ATTRIBUTES = ("countries", "states", "cities", "city_names", "provinces", "regions")
EXTRA_PLACES = frozenset(
    {
        # Cities and regions that are also given names, which Faker's lists do not all carry.
        "adelaide",
        "alexandria",
        "austin",
        "brooklyn",
        "charlotte",
        "chelsea",
        "dallas",
        "florence",
        "georgia",
        "houston",
        "jordan",
        "lincoln",
        "london",
        "madison",
        "paris",
        "phoenix",
        "san francisco",
        "santiago",
        "sofia",
        "sydney",
        "victoria",
        "virginia",
        "washington",
    }
)
