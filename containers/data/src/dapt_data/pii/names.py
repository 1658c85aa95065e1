"""Person names without an NER model: what the record tells us, triggers, and name lists.

Three sources, in decreasing precision:

1. Known names: participant names from the record's metadata (chat customer/agent names,
   turn speakers). Every occurrence of the full name or of a part (3+ letters) is a NAME,
   in any case ("hi sarah").
2. Triggers: "my name is X", "I'm X" / "this is X" (X must be a listed name), greetings
   "Hi X," / "Dear X", sign-offs "Thanks, X" / "Best regards,\\nX", titles "Mr./Ms./Dr. X".
   A following capitalised word is taken as the surname. A word outside the lists that
   is a field label ("thanks Contact: ...") or all capitals ("Regards,\\nIBAN ...") is not.
3. Name lists (`pii.lexicon`: Faker's given names and surnames of 80+ locales, web2's
   ordinary words, places): see `_lexicon_spans`.

Known misses: surnames alone ("Ms Okonkwo" is caught, "Okonkwo said" is not), names in no
list with no trigger ("Dariush", "Funmilayo"), lower-case names that are also words ("mark").
Known false alarms: a listed name used as a brand or place that no rule recognises ("Wells
Fargo" is kept, "Klarna" would not be listed), a capitalised word after a greeting that is
not a name ("Hi Quillsite team" is excluded by the stop list, others may not be).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from dapt_data.pii import lexicon
from dapt_data.pii.gazetteer import AMBIGUOUS_FIRST_NAMES, FIRST_NAMES
from dapt_data.pii.types import PiiType, Span


def name_spans(text: str, known_names: Iterable[str] = ()) -> list[Span]:
    """Every NAME span found by the three sources above."""
    spans = _known_name_spans(text, known_names)
    spans += _trigger_spans(text)
    spans += _lexicon_spans(text)
    return spans


def _known_name_spans(
    text: str, known_names: Iterable[str], detector: str = "known-name"
) -> list[Span]:
    variants: set[str] = set()
    for raw in known_names:
        name = raw.strip()
        if not name:
            continue
        variants.add(name)
        variants.update(part for part in re.split(r"[\s.,;]+", name) if len(part) >= 3)
    spans = []
    for variant in sorted(variants, key=len, reverse=True):
        pattern = re.compile(rf"(?<!\w){re.escape(variant)}(?!\w)", re.IGNORECASE)
        spans += [Span(m.start(), m.end(), PiiType.NAME, detector) for m in pattern.finditer(text)]
    return spans


def _trigger_spans(text: str) -> list[Span]:
    spans = []
    for pattern, needs_gazetteer in _TRIGGERS:
        for m in pattern.finditer(text):
            first = m.group("first")
            if _is_stopword(first):
                continue
            lower = first.lower()
            known = lower in FIRST_NAMES or lower in AMBIGUOUS_FIRST_NAMES
            listed = known or (
                lower in lexicon.first_names() and lower not in lexicon.ordinary_words()
            )
            if needs_gazetteer and not listed:
                continue  # "I'm X" / "this is X": X must be a listed name ("I'm Happy")
            known = listed
            if not first[0].isupper() and not known:
                continue  # a lower-case word after a trigger is a name only if we know it
            if not known and (_is_label(text, m.end("first")) or _is_acronym(first)):
                continue  # "thanks Contact: ...", "Regards,\nIBAN ...", "Thanks FAQ!"
            spans.append(
                Span(m.start("first"), _surname_end(text, m.end("first")), PiiType.NAME, "trigger")
            )
    return spans


def _lexicon_spans(text: str) -> list[Span]:
    """Names that the name lists recognise, then what the same text says about them.

    1. Runs of capitalised words with an unambiguous listed name among them ("Margaret
       Olsen", "Chloé Martin"), and lower-case listed first names that are not words ("ask
       priya about it").
    2. Ambiguous names ("Ana", "Tom") listed beside a found name ("Ana, Wei and Tom").
    3. Every other occurrence of a found name's parts in the same text ("Amara Nwosu is the
       owner" makes the earlier "Amara's shop" a name too).
    """
    runs = _runs(text)
    found = [
        (part[0].start(), part[-1].end())
        for run in runs
        for part in _split_at_words(run)
        if _is_person(text, part)
    ]
    found += [
        (m.start(), _lower_surname_end(text, m.end()))
        for m in _LOWER_TOKEN.finditer(text)
        if _is_lower_name(m)
    ]
    found += _listed_beside(text, runs, found)
    spans = [Span(start, end, PiiType.NAME, "lexicon") for start, end in found]
    spans += _known_name_spans(text, _parts_of(text, found), "lexicon-repeat")
    return spans + [  # an ambiguous part ("Ana", "Will") again, capitalised as it was found
        Span(m.start(), m.end(), PiiType.NAME, "lexicon-repeat")
        for word in _parts_of(text, found, ("ambiguous",))
        for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text)
    ]


def _runs(text: str) -> list[list[re.Match[str]]]:
    """Capitalised words next to each other (a space, an initial, or a particle: "van der")."""
    runs: list[list[re.Match[str]]] = []
    for token in _TOKEN.finditer(text):
        if not _is_capitalised(token.group()):
            continue
        if runs and _JOIN.fullmatch(text, runs[-1][-1].end(), token.start()):
            runs[-1].append(token)
        else:
            runs.append([token])
    return runs


def _split_at_words(run: list[re.Match[str]]) -> list[list[re.Match[str]]]:
    """The parts of a run between ordinary words ("Thanks | Margaret Olsen")."""
    parts: list[list[re.Match[str]]] = [[]]
    for token in run:
        if _kind(token.group()) == "word":
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in parts if part]


def _is_person(text: str, part: list[re.Match[str]]) -> bool:
    kinds = [_kind(token.group()) for token in part]
    if "name" not in kinds:
        return False  # no unambiguous name: "Will Smith", "Grace", "Quillsite Pro"
    if len(part) == 1 and not _is_first_name(part[0].group()):
        return False  # a lone surname ("Santos said", "Gucci") is not enough
    words = text[part[0].start() : part[-1].end()].lower()
    if words in lexicon.places() or any(w in NOT_PERSON_AFTER for w in words.split()):
        return False  # "São Paulo", "Schäfer Holzspielzeug GmbH"
    return not _names_a_thing(text, part[0].start(), part[-1].end())


def used_for_a_thing(text: str, start: int, end: int) -> bool:
    """Whether the capitalised words at `start:end` name a place, business or product: after
    a determiner ("the Luna theme"), before or holding a thing word ("Victoria Street", "Ivy
    and Willow themes", "Victoria Day", "Schäfer Holzspielzeug GmbH"), or a known place."""
    words = text[start:end].lower().split()
    if any(w in NOT_PERSON_AFTER for w in words) or " ".join(words) in lexicon.places():
        return True
    if _names_a_thing(text, start, end):
        return True
    listed = _LIST_TAIL.match(text, end)  # "Ivy and Willow themes": the list's last word
    return listed is not None and listed.group(1).lower() in NOT_PERSON_AFTER


def _names_a_thing(text: str, start: int, end: int) -> bool:
    """Whether a name is used for a place, business or product: "the Luna theme", "Victoria
    Street", "Stella template"."""
    before = _BEFORE.search(text, 0, start)
    after = _AFTER.match(text, end)
    return before is not None or (after is not None and after.group(1).lower() in NOT_PERSON_AFTER)


def _is_lower_name(m: re.Match[str]) -> bool:
    """A lower-case word that is a listed first name and no English word or place ("priya")."""
    word = m.group()
    return (
        word.islower()
        and word.lower() in lexicon.first_names()
        and _kind(word) == "name"
        and not _names_a_thing(m.string, m.start(), m.end())
    )


def _lower_surname_end(text: str, end: int) -> int:
    """Extend a lower-case first name over a listed surname ("james t. kirkland")."""
    m = _LOWER_SURNAME.match(text, end)
    if m is None or m.group("surname") not in lexicon.last_names():
        return end
    return m.end() if _kind(m.group("surname")) == "name" else end


def _listed_beside(
    text: str, runs: list[list[re.Match[str]]], found: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Capitalised words listed with a found name ("Ana, Wei and Tom", "cc Fatima Al-Hassan,
    Arash Farahani and Ji-woo Park"): a run that starts with no ordinary word and is not
    used for a thing."""
    candidates = []
    for run in runs:
        if _kind(run[0].group()) != "word":
            candidates.append((run[0].start(), run[-1].end()))
        candidates += [
            (part[0].start(), part[-1].end())
            for part in _split_at_words(run)
            if _kind(part[0].group()) != "unknown" or len(part) > 1
        ]
    taken = list(found)
    ends = {end for _, end in taken}
    starts = {start for start, _ in taken}
    added: list[tuple[int, int]] = []
    changed = True
    while changed:
        changed = False
        for start, end in candidates:
            if any(s < end and start < e for s, e in taken):
                continue  # already found, or overlapping a found name
            before = _LIST_BEFORE.search(text, max(0, start - 8), start)
            after = _LIST_AFTER.match(text, end)
            beside = (before is not None and before.start() in ends) or (
                after is not None and after.end() in starts
            )
            words = text[start:end].lower().split()
            if any(w in NOT_PERSON_AFTER for w in words) or " ".join(words) in lexicon.places():
                continue
            if beside and not _names_a_thing(text, start, end):
                taken.append((start, end))
                added.append((start, end))
                ends.add(end)
                starts.add(start)
                changed = True
    return added


def _parts_of(
    text: str, found: list[tuple[int, int]], kinds: tuple[str, ...] = ("name", "unknown")
) -> list[str]:
    """The words of the names found (3+ letters, of `kinds`), to find them again."""
    parts = set()
    for start, end in found:
        for word in re.split(r"[\s.,;]+", text[start:end]):
            if len(word) >= MIN_NAME_PART and _kind(word) in kinds:
                parts.add(word)
    return sorted(parts)


def _is_capitalised(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return letters[0].isupper() and any(c.islower() for c in letters)


def _is_first_name(token: str) -> bool:
    lower = token.lower()
    parts = [p for p in re.split(r"[-'\u2019]", lower) if len(p) >= MIN_NAME_PART]
    return lower in lexicon.first_names() or (
        len(parts) > 1 and all(p in lexicon.first_names() for p in parts)
    )


@functools.lru_cache(maxsize=65536)
def _kind(token: str) -> str:
    """'name' (listed, not a word or place), 'ambiguous' (both), 'word' or 'unknown'."""
    lower = token.lower()
    if _CONTRACTION.fullmatch(lower):
        return "word"  # "I'll", "We're"
    parts = [p for p in re.split(r"[-'\u2019]", lower) if len(p) >= MIN_NAME_PART] or [lower]
    listed = lower in lexicon.first_names() or lower in lexicon.last_names()
    listed = listed or (
        len(parts) > 1
        and any(p in lexicon.first_names() or p in lexicon.last_names() for p in parts)
    )
    words = lexicon.ordinary_words()
    # web2 lists no inflections: "Wells", "Brooks", "Banks" are plurals of words.
    common = lower in words or (lower.endswith("s") and lower[:-1] in words)
    common = common or lower in NAME_STOPWORDS or lower in lexicon.places()
    if listed:
        return "ambiguous" if common else "name"
    return "word" if common else "unknown"


def _surname_end(text: str, end: int) -> int:
    """Extend a first name over a following capitalised surname ("Sarah O'Neill")."""
    m = _SURNAME.match(text, end)
    if m is None or _is_stopword(m.group("surname")):
        return end
    return m.end()


def _is_label(text: str, end: int) -> bool:
    """Whether the word ending at `end` is a field label ("Contact:", "Email:")."""
    return text[end : end + 1] == ":"


def _is_acronym(word: str) -> bool:
    """IBAN, FAQ, DNS: all capitals (a name in capitals is taken only if it is known)."""
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= MIN_ACRONYM_LETTERS and all(c.isupper() for c in letters)


def _is_stopword(word: str) -> bool:
    return word.lower() in NAME_STOPWORDS


_WORD_TAIL = r"[^\W\d_]*(?:[-'\u2019][^\W\d_]{2,})*"
_WORD = rf"[^\W\d_]{_WORD_TAIL}"
_SURNAME = re.compile(
    r"[ \t]+(?P<surname>(?:O'|Mc|Mac|van |de |da |di )?[A-Z][^\W\d_]*(?:[-'\u2019][^\W\d_]{2,})*)"
)
_TOKEN = re.compile(
    r"(?<![\w@.])(?:Mc|Mac|O['\u2019]|D['\u2019])?[^\W\d_]+(?:[-'\u2019][^\W\d_]{2,})*"
    r"(?![\w@]|\.\w)"
)
"""A word (letters of any script, inner hyphens and apostrophes), not part of a domain or email."""
_LOWER_SURNAME = re.compile(r"[ \t]+(?:[a-z]\.[ \t]+)?(?P<surname>[^\W\d_A-Z]{3,})(?![\w@]|\.\w)")
_LOWER_TOKEN = re.compile(r"(?<![\w@.])[^\W\d_A-Z]{3,}(?![\w@]|\.\w)")
_JOIN = re.compile(
    r"[ \t]+(?:[A-Z]\.[ \t]+)?"
    r"(?:(?:van|von|vom|zu|de|der|den|da|di|du|del|dela|delos|della|la|le|al|el|bin|bint|ibn|"
    r"ben|abu|dos|das|ter|ten|af|av|y)[ \t]+)*"
)
_CONTRACTION = re.compile(r"[^\W\d_]+['\u2019](?:ll|d|ve|m|re|s|t)")
_LIST_TAIL = re.compile(r"(?:,[ \t]*|[ \t]+(?:and|&|or)[ \t]+)[A-Z][^\W\d_]*[ \t]+([A-Za-z]+)")
_LIST_BEFORE = re.compile(r"(?:,[ \t]*|[ \t]+(?:and|&|or)[ \t]+|,[ \t]*(?:and|&)[ \t]+)$")
_LIST_AFTER = re.compile(r"(?:,[ \t]*|[ \t]+(?:and|&|or)[ \t]+|,[ \t]*(?:and|&)[ \t]+)")
_BEFORE = re.compile(r"(?i:\b(?:the|a|an|our|your|their|my|this|that))[ \t]+$")
_AFTER = re.compile(r"[ \t]+([A-Za-z]+)")
_TRIGGERS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(rf"(?i:\bmy name is|\bmy name's|\bname's|\bcall me)\s+(?P<first>{_WORD})"), False),
    (re.compile(rf"(?i:\bi'm|\bi am|\bthis is|\bit's)\s+(?P<first>{_WORD})"), True),
    (
        re.compile(
            rf"(?i:\b(?:hi|hello|hey|dear|morning|thanks|thank you|cheers|regards|best|bye|"
            rf"sincerely|ta))[ \t]*,?[ \t]+(?P<first>{_WORD})(?=[ \t]+[A-Z][a-z]+[,!.:\n]|"
            r"[ \t]*[,!.:—-]|[ \t]*\n|[ \t]*$)"
        ),
        False,
    ),
    (
        re.compile(
            rf"(?i:\b(?:regards|best|cheers|thanks|sincerely|thank you|many thanks)),?[ \t]*\n"
            rf"[ \t]*(?:-+\s*)?(?P<first>{_WORD})"
        ),
        False,
    ),
    (re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?[ \t]+(?P<first>[A-Z]{_WORD_TAIL})"), False),
    (re.compile(rf"(?m)^[ \t]*(?:--|—)[ \t]*(?P<first>{_WORD})"), False),
)

MIN_ACRONYM_LETTERS = 2
MIN_NAME_PART = 3
NOT_PERSON_AFTER = frozenset(
    {
        # A name followed by one of these names a place, a business or a product.
        "street",
        "st",
        "road",
        "rd",
        "avenue",
        "ave",
        "lane",
        "drive",
        "boulevard",
        "square",
        "place",
        "park",
        "station",
        "bridge",
        "hall",
        "airport",
        "university",
        "college",
        "hospital",
        "school",
        "bank",
        "inc",
        "ltd",
        "llc",
        "gmbh",
        "co",
        "corp",
        "group",
        "studio",
        "studios",
        "design",
        "designs",
        "bakery",
        "cafe",
        "coffee",
        "store",
        "shop",
        "boutique",
        "theme",
        "template",
        "plan",
        "app",
        "plugin",
        "font",
        "integration",
        "collection",
        "edition",
        "series",
        "layout",
        "style",
        "themes",
        "templates",
        "fonts",
        "plugins",
        "apps",
        "plans",
        "day",
        "srl",
        "sarl",
        "sas",
        "spa",
        "bv",
        "nv",
        "ab",
        "oy",
        "as",
        "aps",
        "kg",
        "ag",
        "plc",
        "pty",
        "pvt",
        "limited",
        "florals",
    }
)
NAME_STOPWORDS = frozenset(
    {
        "a",
        "mr",
        "mrs",
        "ms",
        "miss",
        "dr",
        "prof",
        "again",
        "all",
        "also",
        "and",
        "any",
        "at",
        "everyone",
        "folks",
        "for",
        "from",
        "guys",
        "here",
        "in",
        "just",
        "lot",
        "madam",
        "much",
        "not",
        "ok",
        "okay",
        "on",
        "or",
        "quillsite",
        "sir",
        "so",
        "sorry",
        "still",
        "support",
        "sure",
        "team",
        "that",
        "the",
        "there",
        "to",
        "trying",
        "very",
        "wishes",
        "with",
        "you",
        "yes",
        "no",
        "now",
        "going",
        "having",
        "getting",
        "looking",
        "new",
        "back",
        "glad",
        "happy",
        "afraid",
        "done",
        "good",
        "great",
        "fine",
        "regards",
        "thanks",
        "best",
        "hi",
        "hello",
        "customer",
        "agent",
        "billing",
        "sales",
        "admin",
        "user",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "street",
        "road",
        "avenue",
        "plan",
        "pro",
        "starter",
        "commerce",
        "enterprise",
        "free",
        "settings",
        "help",
        "it",
        "is",
        "what",
        "how",
        "when",
        "i",
        "we",
        "they",
        "he",
        "she",
        "my",
        "our",
        "your",
        "this",
        "about",
        "able",
        "unable",
        "interested",
        "wondering",
        "writing",
        "calling",
        "following",
        "reaching",
        "contacting",
        "using",
        "off",
        "out",
        "up",
        "per",
        "via",
        "cc",
        "ask",
        "tell",
        "ping",
        "please",
        "bonjour",
        "salut",
        "merci",
        "hola",
        "gracias",
        "ciao",
        "grazie",
        "hallo",
        "danke",
        "olá",
        "obrigado",
        "obrigada",
        "hej",
        "hei",
        "namaste",
        "salaam",
        "shalom",
        "dobry",
        "dzień",
        "ahoj",
        "szia",
        "servus",
        "moin",
        "grüezi",
        "buongiorno",
        "buenos",
        "buenas",
        "bom",
        "boa",
        "goedemorgen",
        "goedendag",
        "hoi",
        "merhaba",
        "selamat",
        "salam",
        "jambo",
        "habari",
        "sannu",
        "sawasdee",
        "konnichiwa",
        "privet",
        "zdravstvuyte",
    }
)
"""Words after a trigger that are not names ("Hi there", "Thanks again", "I'm trying")."""
