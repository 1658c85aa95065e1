"""Offline detectors: regular expressions for candidates, validators to reject look-alikes.

- emails: an RFC 5322 dot-atom local part (letters, digits and ``!#$%&'*+/=?^_`{|}~-``,
  dots between them; it starts with a letter, digit or `_`), a dotted domain with a 2+ letter
  TLD.
- phones: Google's libphonenumber (`phonenumbers.PhoneNumberMatcher`) over the configured
  regions, leniency VALID; a `+<country code>` number or a North American `(NXX) NXX-XXXX`
  also counts when it is only POSSIBLE (a well-formed number in a range libphonenumber thinks
  unassigned is still somebody's number, or soon will be). A bare digit run without `+`,
  spaces, dashes or brackets counts only after a phone cue ("call", "phone", "mobile", ...),
  because order and reference numbers are often valid numbers in some region.
- cards: digit runs of 13-19 digits (optionally grouped by spaces or dashes) that pass Luhn
  (python-stdnum) and start with a known issuer prefix (Visa, Mastercard, Amex, Discover,
  JCB, Diners, UnionPay, Maestro).
- IBANs: country code + check digits + 11-30 alphanumerics, validated as ISO 13616 defines
  them: the ISO 7064 mod-97 check and the country's registered length and BBAN structure
  (`stdnum.iban` with `check_country=False`). National BBAN check digits (Spain's, France's,
  Belgium's ...) are not checked: an IBAN that passes mod-97 with a wrong national check is
  still a bank account number someone typed. Upper-case only.
- secrets: vendor formats (AWS, GitHub, Slack, Stripe, Google, OpenAI, JWT, PEM private
  keys, bearer tokens), any three-segment base64url token whose first segment decodes to a
  JSON object with `alg` (a JWT whose header is not `eyJ...`, e.g. with a space after `{`),
  and generic `key=`/`token=`/`password:` assignments whose value looks
  random (Shannon entropy), plus bare 32-128 character tokens with upper case, lower case
  and digits and high entropy (AWS secret keys, API keys pasted alone); lower-case hex
  hashes and UUIDs are not matched.
- addresses: see `address_spans`; pattern-based: English-speaking, continental European,
  Japanese and Indian forms, with the unit before and the locality and country after.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

from dapt_data.pii import lexicon
from dapt_data.pii.types import PiiType, Span

_Validator = Callable[[str], bool]


def email_spans(text: str) -> list[Span]:
    """Every email address."""
    return [_span(m.start(), m.end(), PiiType.EMAIL, "email") for m in _EMAIL.finditer(text)]


def phone_spans(text: str, regions: Iterable[str]) -> list[Span]:
    """Phone numbers valid in one of `regions` (numbers with `+` are valid anywhere)."""
    found: set[tuple[int, int]] = set()
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(
            text, region, leniency=phonenumbers.Leniency.VALID
        ):
            if not _plausible_phone(text, match.start, match.raw_string):
                continue
            found.add((match.start, match.end))
    # One POSSIBLE pass (any region: a `+` number names its own) for well-formed numbers in
    # ranges the metadata calls unassigned; bare digit runs stay VALID-only (order numbers).
    for match in phonenumbers.PhoneNumberMatcher(
        text, POSSIBLE_PASS_REGION, leniency=phonenumbers.Leniency.POSSIBLE
    ):
        raw, start = match.raw_string, match.start
        if raw.startswith("(+"):  # "(+1 800 ...)": the bracket opens the aside, not the number
            raw, start = raw[1:], start + 1
        if _WELL_FORMED_PHONE.fullmatch(raw) and _plausible_phone(text, start, raw):
            found.add((start, match.end))
    return [_span(start, end, PiiType.PHONE, "phonenumbers") for start, end in sorted(found)]


def card_spans(text: str) -> list[Span]:
    """Payment card numbers: Luhn-valid, 13-19 digits, known issuer prefix."""
    spans = []
    for match in _DIGIT_RUN.finditer(text):
        end = _longest_valid_prefix(match.group(), _is_card)
        if end is not None:
            spans.append(_span(match.start(), match.start() + end, PiiType.CARD, "luhn"))
    return spans


def iban_spans(text: str) -> list[Span]:
    """IBANs with a valid country length and mod-97 checksum, with or without spaces."""
    spans = []
    for match in _IBAN_CANDIDATE.finditer(text):
        end = _longest_valid_prefix(match.group(), _is_iban)
        if end is not None:
            spans.append(_span(match.start(), match.start() + end, PiiType.IBAN, "iban"))
    return spans


def secret_spans(text: str, min_entropy: float) -> list[Span]:
    """API keys, tokens, private keys and high-entropy credential assignments."""
    spans = [
        _span(m.start(), m.end(), PiiType.SECRET, name)
        for name, pattern in _VENDOR_SECRETS
        for m in pattern.finditer(text)
    ]
    spans += [
        _span(m.start(), m.end(), PiiType.SECRET, "jwt")
        for m in _JWT_LIKE.finditer(text)
        if _is_jwt_header(m.group("header"))
    ]
    for m in _ASSIGNMENT.finditer(text):
        value = m.group("value")
        key = m.group("key").lower().replace("_", "").replace("-", "")
        is_password = any(key.endswith(k) for k in _PASSWORD_KEYS)
        if is_password and len(value) >= MIN_PASSWORD_LEN and any(c.isalnum() for c in value):
            spans.append(_span(m.start("value"), m.end("value"), PiiType.SECRET, "password"))
        elif _looks_random(value, min_entropy):
            spans.append(_span(m.start("value"), m.end("value"), PiiType.SECRET, "assignment"))
    for m in _BARE_TOKEN.finditer(text):
        value = m.group()
        if "/" in value and len(value) != AWS_SECRET_LEN:
            continue  # a path ("Users/JaneDoe/Documents/...") rather than an AWS secret key
        if _mixed_classes(value) and shannon_entropy(value) >= min_entropy + BARE_TOKEN_BONUS:
            spans.append(_span(m.start(), m.end(), PiiType.SECRET, "bare-token"))
    return spans


def address_spans(text: str) -> list[Span]:
    """Street addresses by pattern.

    Finds a street, then extends it back over a unit and building written before it
    (`_unit_start`: "Flat 12, ", "Apartment 1204, The Meridian, ", "Level 9, ") and forward
    over the locality after it (`_locality_end`). Streets:
    - "<number> <Capitalised words> <street suffix>" (Street, Ave, Rd, ...) with an optional
      unit after it ("Apt 4B", "Suite 200");
    - a compound street name then its number: German, Dutch and Nordic ("Hauptstraße 5",
      "Keizersgracht 221-H", "Storgatan 12");
    - a street type first, then the name and number: Spanish, Portuguese, Italian, Polish
      ("Calle de Alcalá 87", "Rua Augusta 1508", "Via Roma 12", "ul. Marszałkowska 84/92 m.
      17"), with a unit after it (", 3º izquierda", ", Int. 4", ", Conjunto 42");
    - French "<number> rue/avenue/... <name>" ("3 Rue des Lilas");
    - Japanese block numbers "2-14-7 Kichijoji Honcho";
    - a numbered unit then a street with no number ("Plot 14, Admiralty Way", "Unit 6,
      Riverside Business Park"); "P.O. Box 123".
    Misses: addresses without a house number or unit and suffix ("the old mill on Bridge
    Lane"), lower-case addresses, non-Latin scripts, and a city or postcode written with no
    street before it.
    """
    return [
        _span(
            _unit_start(text, m.start()), _locality_end(text, m.end()), PiiType.ADDRESS, "address"
        )
        for pattern in _ADDRESSES
        for m in pattern.finditer(text)
    ]


def _unit_start(text: str, start: int) -> int:
    """Where a unit and building before a street begin ("Flat 5B, Sea Breeze Apartments / ")."""
    window = max(0, start - UNIT_WINDOW)
    m = _UNIT_BEFORE.search(text, window, start)
    return m.start() if m is not None else start


def _locality_end(text: str, end: int) -> int:
    """Where the locality after a street ends ("..., Springfield, IL 62704", "\nLeeds LS1 4AP").

    Parts are cities (1-3 capitalised words, optionally a district number: "Dublin 8"),
    codes (2-3 capitals: a state, province or country) and postal codes. After a comma or a
    newline any part may follow; after a space only a code, a postal code, a city right after
    a postal code ("10115 Berlin") or a city that a code or postal code follows ("Austin TX").
    Without a code or postal code the locality is at most one comma-separated city (a
    capitalised word after a street is not always a place); parts on the next line count only
    when a code or postal code is among them.
    """
    parts: list[tuple[str, str, int]] = []  # (separator kind, part kind, end)
    values: list[str] = []
    pos = end
    while len(parts) < MAX_LOCALITY_PARTS:
        m = _LOCALITY_PART.match(text, pos)
        if m is None:
            break
        sep = m.group("sep")
        sep = "newline" if "\n" in sep or "/" in sep else "comma" if "," in sep else "space"
        kind = next(k for k in ("postal", "code", "city") if m.group(k))
        if kind == "city" and m.group("city").split()[0].lower() in LOCALITY_STOPWORDS:
            break
        parts.append((sep, kind, m.end()))
        values.append(m.group(kind))
        pos = m.end()
    accepted: list[tuple[str, str, int]] = []
    for index, (sep, kind, part_end) in enumerate(parts):
        if sep == "space" and kind == "city":
            after_postal = bool(accepted) and accepted[-1][1] == "postal"
            following = parts[index + 1] if index + 1 < len(parts) else None
            before_code = following is not None and following[0] == "space"
            before_code = before_code and following is not None and following[1] != "city"
            if not (after_postal or before_code):
                break
        accepted.append((sep, kind, part_end))
    coded = [i for i, (_, kind, _) in enumerate(accepted) if kind != "city"]
    if not coded:
        first = accepted[0] if accepted else None
        if not (first and first[0] == "comma"):
            return end
        # one city, and the country after it ("Ring Road, Accra, Ghana")
        return accepted[_then_countries(values, len(accepted), 0)][2]
    newline = next((i for i, (sep, _, _) in enumerate(accepted) if sep == "newline"), None)
    if newline is not None and coded[-1] < newline:
        accepted = accepted[:newline]
        coded = [i for i in coded if i < newline]
        if not coded:
            return end
    last = coded[-1]
    # a city or country after the last postal code belongs to it ("75002 Paris", ", UK")
    if last + 1 < len(accepted) and accepted[last + 1][1] == "city":
        last += 1
    return accepted[_then_countries(values, len(accepted), last)][2]


def _then_countries(values: list[str], count: int, last: int) -> int:
    """The last of the parts after `last` that name a country ("Germany", "España")."""
    while last + 1 < count and values[last + 1].lower() in lexicon.countries():
        last += 1
    return last


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution."""
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _span(start: int, end: int, kind: PiiType, detector: str) -> Span:
    return Span(start, end, kind, detector)


def _plausible_phone(text: str, start: int, raw: str) -> bool:
    """Reject digit runs that are part of a code or follow an order/ticket/reference label."""
    before = text[max(0, start - PHONE_CUE_WINDOW) : start]
    if before and (before[-1].isalnum() or before[-1] in "-_/"):
        return False  # "INV-2024-000123", "ZIP+4 90210-1234"
    if not raw.startswith("+") and _NOT_PHONE_CUE.search(before):
        return False
    return not raw.isdigit() or _PHONE_CUE.search(before) is not None


def _longest_valid_prefix(candidate: str, valid: _Validator) -> int | None:
    """Length of the longest prefix ending at a group boundary that `valid` accepts.

    A card followed by its CVV ("4111 1111 1111 1111 123") or an IBAN followed by an
    upper-case word forms one longer candidate; trimming whole groups recovers the value.
    """
    ends = [m.start() for m in _GROUP_BREAK.finditer(candidate)] + [len(candidate)]
    for end in sorted(set(ends), reverse=True):
        if valid(candidate[:end]):
            return end
    return None


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    if not MIN_CARD_DIGITS <= len(digits) <= MAX_CARD_DIGITS or not digits.isdigit():
        return False
    return _CARD_ISSUER.match(digits) is not None and luhn.is_valid(digits)


def _is_iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    return len(compact) >= MIN_IBAN_LEN and bool(stdnum_iban.is_valid(compact, check_country=False))


def _is_jwt_header(segment: str) -> bool:
    """Whether a base64url segment decodes to a JSON object naming an `alg` (a JOSE header)."""
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(decoded)
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


def _looks_random(value: str, min_entropy: float) -> bool:
    return (
        len(value) >= MIN_SECRET_LEN
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and shannon_entropy(value) >= min_entropy
    )


def _mixed_classes(value: str) -> bool:
    return (
        any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    )


def _iter_vendor() -> Iterator[tuple[str, re.Pattern[str]]]:
    for name, pattern in _VENDOR_SOURCES:
        yield name, re.compile(pattern)


# The lookbehind leaves out `'` so that a quoted address ('jane@example.com') starts after
# the quote while o'brien.pat@example.com is matched from its first letter.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9!#$%&*+/=?^_`{|}~.-])[A-Za-z0-9_](?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,63})@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_PHONE_CUE = re.compile(
    r"\b(?:phone|call|tel|telephone|mobile|cell|whats ?app|sms|text me|reach me|ring|"
    r"number|contact|fax)\b",
    re.IGNORECASE,
)
_NOT_PHONE_CUE = re.compile(
    r"\b(?:order|invoice|inv|ref|reference|tracking|ticket|sku|id|account|acct|serial|case|"
    r"batch|build|item|product|po)\b\W*(?:number|no|nr|num|id|#)?\W*$",
    re.IGNORECASE,
)
_WELL_FORMED_PHONE = re.compile(r"\+\d[\d ()./-]{6,}\d|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}")
"""A `+<country code>` number, or a North American `(NXX) NXX-XXXX`."""
_DIGIT_RUN = re.compile(r"(?<![\w-])\d(?:[ -]?\d)+(?![\w])")
_GROUP_BREAK = re.compile(r"[ -]")
_CARD_ISSUER = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8])|"
    r"3(?:0[0-5]|[68])|5[06-9]|6[0-9]"
)
_IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")

_VENDOR_SOURCES: tuple[tuple[str, str], ...] = (
    (
        "aws-access-key-id",
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|"
        r"APKA|AROA|ASCA)[A-Z0-9]{16}(?![A-Z0-9])",
    ),
    ("github-token", r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])"),
    ("github-pat", r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{50,255}"),
    ("slack-token", r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,250}"),
    ("slack-webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
    ("stripe-key", r"(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,247}"),
    ("stripe-webhook-secret", r"(?<![A-Za-z0-9_])whsec_[A-Za-z0-9]{24,}"),
    ("google-api-key", r"(?<![A-Za-z0-9_])AIza[0-9A-Za-z_-]{35}"),
    ("openai-key", r"(?<![A-Za-z0-9_])sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}"),
    ("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    (
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    ),
    ("bearer-token", r"(?<=Bearer )[A-Za-z0-9._~+/-]{20,}=*"),
)
_VENDOR_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(_iter_vendor())
_JWT_LIKE = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<header>[A-Za-z0-9_-]{12,})\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"(?![A-Za-z0-9_-])"
)

_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<key>[A-Za-z0-9_.-]*?(?:api[_-]?key|apikey|secret|token|"
    r"access[_-]?key|auth|password|passwd|pwd|credential)s?(?:[_-]?id)?)[\"']?\s*(?:=|:|=>)\s*[\"']?"
    r"(?P<value>[^\s\"',;<>]+)"
)
_PASSWORD_KEYS = ("password", "passwd", "pwd")
_BARE_TOKEN = re.compile(r"(?<![A-Za-z0-9/+=_-])[A-Za-z0-9/+]{32,128}(?![A-Za-z0-9/+=_-])")

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Terrace|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Crescent|Close|Row|Mews|Gardens|"
    r"Grove|Hill|Cross)\.?(?:[ \t]+(?:North|South|East|West|NE|NW|SE|SW)\b)?"
)
_CAP = r"(?:[A-Z][a-z'\u2019]+|[A-Z]{2,3})\.?"
_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆČĎĐĒĘĚĞĪİŁŃŇŌŐŒŘŚŞŠŢŤŪŮŰŹŻŽ"
_CITY_WORD = rf"[{_UPPER}][^\W\d_]*(?:['\u2019-][^\W\d_]+)*"
"""A capitalised word of any Latin script ("São", "Łódź", "Musashino-shi")."""
_PARTICLE = r"(?:de|da|do|dos|das|del|della|delle|dei|di|la|le|les|des|du|d'|l')"
_LOCALITY_PART = re.compile(
    r"(?P<sep>,[ \t]*|[ \t]*\n[ \t]*|[ \t]*/[ \t]*|[ \t]+-[ \t]+|[ \t]+)(?:"
    r"(?P<postal>(?:[A-Z]-)?(?:\d{5}-\d{3}(?!\d)|\d{5}(?:-\d{4})?(?!\d))|\d{3}-\d{4}(?!\d)"
    r"|\d{4}-\d{3}(?!\d)|\d{3}[ \t]\d{2}(?!\d)|\d{2}-\d{3}(?!\d)|\d{6}(?!\d)"
    r"|\d{4}[ \t]?[A-Z]{2}(?![A-Za-z])|\d{4}(?!\d)"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d|[A-Z]\d{2}[ \t]?[A-Z\d]{4})"
    r"|(?P<code>[A-Z]{2,4})"
    rf"|(?P<city>(?:(?:Co|Col)\.[ \t]|Colonia[ \t]|Bairro[ \t])?{_CITY_WORD}"
    rf"(?:[ \t](?:{_PARTICLE}[ \t])?{_CITY_WORD}){{0,2}}(?:[ \t]\d{{1,2}}|[ \t][A-ZØ](?!\w))?)"
    r")(?![\w@])"
)
"""One part of the locality after a street: its separator, then a postal code, a code or a city."""
_UNIT = (
    r"(?i:Flat|Apt|Apartment|Suite|Ste|Unit|Level|Floor|Fl|Plot|Room|Rm|Building|Bldg|Block|Blk|"
    r"Office|Shop|Lot|Villa)\.?[ \t]*#?[A-Za-z0-9][\w/-]*"
)
_UNIT_BEFORE = re.compile(
    rf"(?<![\w-])(?:{_UNIT}(?:[ \t]*[,/][ \t]*|[ \t]+)"
    rf"(?:(?:The[ \t]+)?{_CITY_WORD}(?:[ \t]+{_CITY_WORD}){{0,3}}[ \t]*[,/][ \t]*)?"
    r"|(?i:Blk|Block|No\.|Nr\.)[ \t]*)$"
)
"""A unit and an optional building name before a street ("Apartment 1204, The Meridian, ")."""
_AFTER_STREET_UNIT = (
    r"(?:,?[ \t]*(?i:int|interno|piso|puerta|conjunto|apto|apt|sala|bloco|bl|lok|m|esc|"
    r"escalera|depto|dpto|sc|scala|bte|bus|boîte)\.?[ \t]*\d+[\wº°ª]*"
    r"|,[ \t]*\d+[º°ª][ \t]*[^\W\d_]+\.?"  # 2º Esq., 3º izquierda
    r"|,[ \t]*\d+\.[ \t]*(?i:th|tv|mf|sal)\.?"  # Danish floors: 2. th.
    r")*"
)
_ADDRESSES: tuple[re.Pattern[str], ...] = (
    # 221B Baker Street, Apt 4, Springfield, IL 62704 | 10 Downing Street, London SW1A 2AA
    re.compile(
        rf"\b\d{{1,6}}[A-Za-z]?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?(?:{_CAP}\s+){{0,3}}"
        rf"{_CAP}\s+{_STREET_SUFFIX}"
        r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|#)\.?\s*#?[A-Za-z0-9-]+)?"
    ),  # the city, state and postcode are `_locality_end`'s
    # Hauptstraße 5, 10115 Berlin | Am Lindenweg 12a | Keizersgracht 221-H | Storgatan 12
    re.compile(
        r"\b(?:[A-ZÄÖÜ][a-zäöüß]+[- ])?(?:[A-ZÄÖÜÅØÆ][a-zäöüßåøæ]*(?:straße|strasse|str\.|weg|"
        r"platz|allee|gasse|ring|damm|ufer|straat|gracht|laan|plein|kade|singel|dijk|steeg|"
        r"markt|vej|gatan|vägen|gata|veien)|[A-ZÆØÅ][a-zæøå]{3,}gade|Straße|Strasse|Str\.|Weg|"
        r"Platz|Allee|Gasse)\s+\d{1,4}[a-zA-Z]?(?:[-/][A-Z0-9]{1,3})*(?![\w])"
        rf"{_AFTER_STREET_UNIT}"
    ),
    # Vinohradská 1511/230, 100 00 Praha | Unter den Linden 5, 10117 Berlin: a street name and
    # number of any form, when a postal code and a city follow
    re.compile(
        rf"(?<![\w-])(?:{_CITY_WORD}[ \t]+(?:{_PARTICLE}[ \t]+|den[ \t]+)*){{0,3}}"
        rf"{_CITY_WORD}[ \t]+"
        r"\d{1,5}[a-zA-Z]?(?:[/-]\d{1,4}[a-zA-Z]?)*"
        r"(?=,?[ \t]*(?:[A-Z]{1,2}-)?(?:\d{4,5}|\d{3}[ \t]\d{2}|\d{2}-\d{3}|\d{4}-\d{3})[ \t]+"
        rf"{_CITY_WORD})"
    ),
    # Calle de Alcalá 87, 3º izquierda | Rua Augusta 1508 | Via Roma 12, Int. 4 | ul. Długa 5/7
    re.compile(
        r"(?<![\w.])(?:Rua|Avenida|Av\.|Calle|C/|Carrer|Via|Viale|Piazza|Corso|Largo|Vicolo|"
        r"Rambla|Paseo|Travessa|Estrada|Alameda|Praça|Plac|Aleja|Ulica|ul\.|(?<!et )al\.|os\.|"
        r"Rue|Avenue|Boulevard|Chaussée|Chemin|Quai|Place)"
        r"[ \t]+"
        rf"(?:{_PARTICLE}[ \t]*)*{_CITY_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]*)*{_CITY_WORD}){{0,4}},?"
        r"[ \t]+\d{1,5}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)?(?:[ \t]+(?:m\.|lok\.)[ \t]*\d+)?"
        rf"(?![\w]){_AFTER_STREET_UNIT}"
    ),
    # 12 rue de la Paix, 75002 Paris | 3 Rue des Lilas
    re.compile(
        r"\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|"
        r"impasse|quai)\s+(?:(?:de|du|des|la|le|l'|d')\s*)*[A-ZÉ][\w'\u2019-]+"
        r"(?:[ \t][A-ZÉ][\w'\u2019-]+)*"
    ),
    # 2-14-7 Kichijoji Honcho, Musashino-shi, Tokyo 180-0004
    re.compile(
        rf"(?<![\w-])\d{{1,2}}-\d{{1,2}}-\d{{1,3}}[ \t]+{_CITY_WORD}(?:[ \t]+{_CITY_WORD}){{0,2}}"
    ),
    # Plot 14, Admiralty Way | Unit 6, Riverside Business Park
    re.compile(
        rf"(?<![\w-]){_UNIT}[ \t]*,[ \t]*(?:{_CAP}\s+){{0,3}}{_CAP}\s+(?:{_STREET_SUFFIX}|Park\b)"
    ),
    re.compile(r"\bP\.?\s?O\.?\s?Box\s+\d{1,6}\b", re.IGNORECASE),
)

PHONE_CUE_WINDOW = 30
ADDRESS = PiiType.ADDRESS
UNIT_WINDOW = 120
"""How far before a street a unit and building name are looked for (characters)."""
MAX_LOCALITY_PARTS = 6
LOCALITY_STOPWORDS = frozenset(
    {"thanks", "thank", "please", "regards", "cheers", "best", "and", "or", "but", "then", "ok"}
)
"""Capitalised words after a street that start a sentence or a sign-off, not a city."""
POSSIBLE_PASS_REGION = "US"
"""Region of the POSSIBLE pass: `+` numbers name their own, `(NXX) NXX-XXXX` is North American."""
MIN_CARD_DIGITS = 13
MAX_CARD_DIGITS = 19
MIN_IBAN_LEN = 15
MIN_SECRET_LEN = 12
MIN_PASSWORD_LEN = 4
AWS_SECRET_LEN = 40
BARE_TOKEN_BONUS = 1.2
"""Bare 32+ character tokens need this much more entropy than `key=` values (no context)."""
