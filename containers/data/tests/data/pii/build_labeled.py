"""Build `labeled.jsonl`, the PII evaluation set, from the templates and values below.

Run `python tests/data/pii/build_labeled.py` after editing; `test_redact_eval.py` fails when
the file is out of date. Every value is fictional: example.com/.org/.net addresses, phone
numbers from ranges set aside for drama or documentation where a country has one (US 555-01xx,
UK 020 7946 0xxx, AU 0491 570 xxx) and otherwise made up, payment networks'
published test card numbers, IBANs from the registry's documentation examples, and keys that
are random strings in each vendor's format (generated from a fixed seed; none was ever
issued). Gold spans are written inline as `{TYPE:value}`; `known_names` lists participant
names the record's metadata would carry.

The same author wrote these templates and the detectors, so the set measures regressions and
format coverage, not performance on unseen data.
"""

from __future__ import annotations

import json
import random
import re
import string
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "labeled.jsonl"
MARK = re.compile(r"\{(EMAIL|PHONE|CARD|IBAN|ADDRESS|NAME|SECRET):([^{}]+)\}")

EMAILS = [
    "jane.doe@example.com",
    "j.smith+billing@example.org",
    "ALEX.KIM@EXAMPLE.NET",
    "mario_rossi99@mail.example.it",
    "support-team@shop.example.co.uk",
    "p.sharma@example.in",
    "lee@example.com",
    "o.okafor@example.ng",
    "anna-lena.mueller@example.de",
    "c.dubois@example.fr",
    "kenji.tanaka@example.jp",
    "sam.w@sub.mail.example.com",
    "info@bakery.example",
    "noreply@example.org",
    "x.y.z@example.io",
    "first.last.2024@example.com",
    "maria.garcia@correo.example.es",
    "tom@example.co",
    "hello@studio-42.example.net",
    "a1b2c3@example.com",
    # issue 16: RFC 5322 local-part characters
    "o'brien.pat@example.com",
    "d'angelo+news@example.org",
    "first!last@example.net",
]
PHONES = [
    "(415) 555-0132",
    "415-555-0178",
    "415.555.0190",
    "+1 212 555 0147",
    "+1-646-555-0163",
    "+44 20 7946 0011",
    "020 7946 0123",
    "+44 7911 123456",
    "07400 123456",
    "+49 30 12345678",
    "+49 89 2019 3344",
    "+33 1 42 68 53 00",
    "01 42 68 53 00",
    "+91 98765 43210",
    "+91-22-2345-6789",
    "+61 2 9876 5432",
    "0491 570 110",
    "+81 3-1234-5678",
    "+55 11 91234-5678",
    "+52 55 1234 5678",
    "+34 912 345 678",
    "+39 06 1234 5678",
    "+31 20 123 4567",
    "(604) 555-0142",
    "+1 (305) 555-0111",
    # issue 16: well-formed numbers in ranges libphonenumber calls unassigned
    "+1 (999) 555-0123",
    "+1 (958) 555-0100",
    "+86 123 4567 8901",
    "+1 800 000 0000",
]
CARDS = [
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "5555 5555 5555 4444",
    "5105-1051-0510-5100",
    "3782 822463 10005",
    "3714 496353 98431",
    "6011 1111 1111 1117",
    "6011000990139424",
    "3530 1113 3330 0000",
    "3566 0020 2036 0505",
    "4242 4242 4242 4242",
    "4000 0566 5566 5556",
    "2223 0031 2200 3222",
    "5200 8282 8282 8210",
    "4012 8888 8888 1881",
    "3056 9309 0259 04",
    "6200 0000 0000 0005",
    "4000-0027-6000-3184",
    "5454545454545454",
]
IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32",
    "GB33BUKB20201555555555",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "ES91 2100 0418 4502 0005 1332",
    "IT60 X054 2811 1010 0000 0123 456",
    "BE71 0961 2345 6769",
    "CH93 0076 2011 6238 5295 7",
    "AT61 1904 3002 3457 3201",
    "PL61 1090 1014 0000 0712 1981 2874",
    "SE45 5000 0000 0583 9825 7466",
    "IE29 AIBK 9311 5212 3456 78",
    "NO93 8601 1117 947",
    "DK50 0040 0440 1162 43",
    "PT50 0002 0123 1234 5678 9015 4",
    "FI21 1234 5600 0007 85",
    "LU28 0019 4006 4475 0000",
    # issue 16: mod-97 valid with failing national checks, a Luhn-valid run inside
    "ES91 3982 5979 1907 4833 7887",
    "BE14 2675 1555 0425",
    "DE04 4514 0604 5246 1416 38",
]
ADDRESSES = [
    "742 Evergreen Terrace, Springfield, IL 62704",
    "1600 Pennsylvania Ave",
    "221B Baker Street",
    "10 Downing Street, London SW1A 2AA",
    "350 Fifth Avenue, Suite 3300, New York, NY 10118",
    "12 Oak Lane",
    "4 Privet Drive",
    "77 Massachusetts Ave, Cambridge, MA 02139",
    "Hauptstraße 5, 10115 Berlin",
    "Lindenweg 12a",
    "Am Kirchplatz 3",
    "12 rue de la Paix, 75002 Paris",
    "8 avenue des Champs-Élysées",
    "P.O. Box 4521",
    "55 Water Street, Apt 4B",
    "9 Elm Court",
    "31 Spooner Street",
    "2 Harbour Road, Dublin",
    "19 King's Road",
    "500 W Madison St, Chicago, IL 60661",
    # issue 16: the city and postal code after the street
    "742 Evergreen Terrace, Springfield, Illinois 62704",
    "12 Oak Lane, Toronto, ON M5V 2T6",
    "9 Elm Court, Melbourne VIC 3000, Australia",
    "Hauptstraße 5 10115 Berlin",
    "14 Mill Road, Cambridge CB1 2AD",
]
NAMES_TRIGGER: list[tuple[str, list[str]]] = [
    ("my name is {NAME:Sarah Connolly}", []),
    ("This is {NAME:Priya} from the bakery", []),
    ("Hi {NAME:Tom},", []),
    ("Thanks, {NAME:Elena}", []),
    ("Dear Mr {NAME:Okonkwo}", []),
    ("Regards,\n{NAME:Hannah Fischer}", []),
    ("I'm {NAME:Carlos}, the owner", []),
    ("Hello {NAME:Aisha}!", []),
    ("Cheers, {NAME:Liam}", []),
    ("Hi {NAME:Grace},", []),
    ("my name's {NAME:Kofi Mensah}", []),
    ("Thank you, {NAME:Yuki}.", []),
    ("call me {NAME:Bea}", []),
    ("Best,\n{NAME:Jonas Weber}", []),
    ("Dr. {NAME:Amara Singh} asked", []),
    ("Hey {NAME:Mateo},", []),
]
NAMES_KNOWN: list[tuple[str, list[str]]] = [
    ("I spoke with {NAME:Zbigniew} yesterday", ["Zbigniew Nowak"]),
    ("{NAME:Nowak} here again", ["Zbigniew Nowak"]),
    ("ok {NAME:siobhan} I'll try that", ["Siobhan"]),
    ("Agent {NAME:Thandiwe} said it was fixed", ["Thandiwe"]),
    ("{NAME:Oluwaseun Adeyemi} requested the export", ["Oluwaseun Adeyemi"]),
]
NAMES_FIELDS: list[tuple[str, list[str]]] = [
    # issue 16: names a source declares (pii_name_fields), seen anywhere in the text
    (
        "Customer: hi, {NAME:zofia} here\nAgent: Hello {NAME:Zofia}, {NAME:Tendai} speaking",
        ["Zofia Wiśniewska", "Tendai"],
    ),
    ("{NAME:Wiśniewska} is the name on the invoice", ["Zofia Wiśniewska"]),
    ("Agent: thanks {NAME:Ikechukwu}, I've passed it on", ["Ikechukwu Obi"]),
]
ADDRESS_EDGES = ["I moved to {ADDRESS:12 Oak Lane} in 2019, Thanks again"]
NAMES_GAZETTEER = [
    "{NAME:Maria Lopez} set up the store",
    "ask {NAME:David} about the invoice",
    "{NAME:Fatima} changed the DNS",
    "forwarded to {NAME:Chen Wei}",
    "{NAME:Olivia} and {NAME:Noah} share the account",
    "{NAME:Rahul Gupta} is our developer",
]
NAMES_MISSED_BY_DESIGN = [
    "ping {NAME:Okonkwo} about it",
    "{NAME:Xochitl} uploaded the logo",
]


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def secrets() -> list[str]:
    """Fictional keys in each vendor's format, from a fixed seed."""
    rng = random.Random(20240611)
    upper_digits = string.ascii_uppercase + string.digits
    alnum = string.ascii_letters + string.digits
    b64 = alnum + "/+"
    out = ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
    out += ["AKIA" + _rand(rng, upper_digits, 16) for _ in range(3)]
    out += ["ASIA" + _rand(rng, upper_digits, 16) for _ in range(2)]
    out += [_rand(rng, b64, 40) for _ in range(3)]
    out += ["ghp_" + _rand(rng, alnum, 36) for _ in range(3)]
    out += ["gho_" + _rand(rng, alnum, 36), "ghs_" + _rand(rng, alnum, 36)]
    out += ["github_pat_" + _rand(rng, alnum, 22) + "_" + _rand(rng, alnum, 59)]
    out += [
        "xoxb-"
        + "-".join(_rand(rng, string.digits, 12) for _ in range(2))
        + "-"
        + _rand(rng, alnum, 24)
        for _ in range(2)
    ]
    out += [
        "xoxp-"
        + "-".join(_rand(rng, string.digits, 12) for _ in range(3))
        + "-"
        + _rand(rng, "abcdef0123456789", 32)
    ]
    out += ["sk_test_" + _rand(rng, alnum, 24) for _ in range(2)]
    out += ["rk_test_" + _rand(rng, alnum, 24), "pk_test_" + _rand(rng, alnum, 24)]
    out += ["whsec_" + _rand(rng, alnum, 32)]
    out += ["AIza" + _rand(rng, alnum + "_-", 35) for _ in range(2)]
    out += ["sk-proj-" + _rand(rng, alnum + "_-", 48)]
    header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    out += [f"{header}.eyJ{_rand(rng, alnum, 40)}.{_rand(rng, alnum + '_-', 43)}" for _ in range(3)]
    space_header = "eyAiYWxnIjogIkhTMjU2IiwgInR5cCI6ICJKV1QiIH0"  # '{ "alg": "HS256", ... }'
    out += [f"{space_header}.eyAi{_rand(rng, alnum + '_-', 40)}.{_rand(rng, alnum + '_-', 43)}"]
    out += [_rand(rng, alnum, 32) for _ in range(3)]  # generic assignments
    out += ["Tr0ub4dor&3x", "hunter2!Qz"]  # passwords
    return out


SECRET_TEMPLATES = [
    "aws_access_key_id = {SECRET:%s}",
    "export AWS_SECRET_ACCESS_KEY={SECRET:%s}",
    "the key {SECRET:%s} leaked in the logs",
    "token: {SECRET:%s}",
    "Authorization: Bearer {SECRET:%s}",
    'config.api_key = "{SECRET:%s}"',
    "use {SECRET:%s} for the webhook",
    "SLACK_TOKEN='{SECRET:%s}'",
]
PASSWORD_TEMPLATES = ["password: {SECRET:%s}", "db_password={SECRET:%s}"]
PRIVATE_KEYS = [
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA{r1}\n{r2}\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{r1}\n"
    "-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC{r1}\n-----END PRIVATE KEY-----",
]

EMAIL_TEMPLATES = [
    "you can reach me at {EMAIL:%s} any time",
    "Email: {EMAIL:%s}",
    "<{EMAIL:%s}>",
    "send the invoice to {EMAIL:%s}, please",
    "contact {EMAIL:%s}.",
    "mailto:{EMAIL:%s}",
]
PHONE_TEMPLATES = [
    "call me on {PHONE:%s} after 5pm",
    "Tel: {PHONE:%s}",
    "my number is {PHONE:%s}.",
    "WhatsApp {PHONE:%s} if urgent",
    "office ({PHONE:%s}) or email",
    "reach us at {PHONE:%s}",
]
CARD_TEMPLATES = [
    "my card is {CARD:%s} exp 12/27",
    "charged to {CARD:%s} twice",
    "card number: {CARD:%s}",
    "I typed {CARD:%s} cvv 123",
    "Visa {CARD:%s}.",
    "it declined {CARD:%s} again",
]
IBAN_TEMPLATES = [
    "IBAN: {IBAN:%s}",
    "please refund to {IBAN:%s} BIC EXAMPLEXX",
    "my account {IBAN:%s}.",
    "bank transfer to {IBAN:%s} reference INV-2024-118",
]
ADDRESS_TEMPLATES = [
    "ship it to {ADDRESS:%s} please",
    "our office is at {ADDRESS:%s}.",
    "Billing address: {ADDRESS:%s}",
    "I moved to {ADDRESS:%s} last month",
]

NEGATIVES = [
    "Order #4829103822 shipped on 2024-01-15.",
    "order number 7719340025 is still pending",
    "ref 12345678901 in the ticket",
    "Upgrade to v2.14.3 or 1.0.0-rc.1 fixes it.",
    "Invoice INV-2024-000123 for $1,299.00 was paid on 15/01/2024.",
    "Plan price is €49.99 per month, or 1 299,00 € per year.",
    "Request id 123e4567-e89b-12d3-a456-426614174000 failed.",
    "UPS tracking 1Z999AA10123456784 and USPS 9400 1000 0000 0000 0000 00.",
    "FedEx tracking number 7489 2837 4912 shows delivered.",
    "commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b broke the build",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 d41d8cd98f00b204e9800998ecf8427e",
    "ISBN 978-3-16-148410-0 is the manual.",
    "SKU 4006381333931 is out of stock",
    "AWS account 123456789012 in eu-west-1",
    "Meeting 10:30-11:45 on Jan 15, 2024.",
    "Uptime SLA is 99.95% for Enterprise.",
    "Hi there, thanks again!",
    "Thanks so much for the quick reply.",
    "Will you refund the Grace period charges?",
    "Mark as read, then Bill me annually.",
    "The June 5 release adds May templates.",
    "Hello team, quick question about DNS.",
    "Set the TTL to 3600 and the MX priority to 10.",
    "Port 8443 and IP 192.0.2.44 are open.",
    "Error code 0x80070005 when uploading.",
    "Product ID 8841-2290-1177 is discontinued.",
    "Set api_key to the value from Settings > API.",
    "token=REDACTED_BY_USER",
    "password: ******",
    "Use the header X-Request-Id: 42.",
    "Quillsite Pro costs $16/month billed annually.",
    "Victoria theme and Austin template look great.",
    "Batch 2023-11-30T08:15:00Z finished in 1,234 ms.",
    "Zip 90210 and ZIP+4 90210-1234.",
    "The CSS class is .btn-primary and the ID is #main-nav.",
    "Press Ctrl+Shift+R to reload.",
    "Coupon SAVE20NOW applies to Starter.",
    "Ticket 2024-555-0199 was closed.",
    "Call the function with key=value pairs.",
    # issue 16: look-alikes of the new rules
    "ok thanks Contact: our help centre",
    "Regards,\nIBAN checks run nightly",
    "Thanks FAQ readers!",
    "Order 2024-01-15-0042 shipped; v1.2.3 and 10.0.19045; build 20240115.3",
    "see config.settings_loader.reload_all_values for details",
]


def examples() -> list[tuple[str, list[str]]]:
    """(marked-up text, known names) for every example, in a fixed order."""
    out: list[tuple[str, list[str]]] = []

    def cycle(values: list[str], templates: list[str]) -> None:
        for i, value in enumerate(values):
            for j in range(2):
                out.append((templates[(i + j * 3) % len(templates)] % value, []))

    cycle(EMAILS, EMAIL_TEMPLATES)
    cycle(PHONES, PHONE_TEMPLATES)
    cycle(CARDS, CARD_TEMPLATES)
    cycle(IBANS, IBAN_TEMPLATES)
    cycle(ADDRESSES, ADDRESS_TEMPLATES)
    for i, value in enumerate(secrets()):
        is_password = value in {"Tr0ub4dor&3x", "hunter2!Qz"}
        templates = PASSWORD_TEMPLATES if is_password else SECRET_TEMPLATES
        out.append((templates[i % len(templates)] % value, []))
    rng = random.Random(7)
    b64 = string.ascii_letters + string.digits + "/+"
    for key in PRIVATE_KEYS:
        body = key.format(r1=_rand(rng, b64, 48), r2=_rand(rng, b64, 64))
        out.append(("here is the deploy key:\n{SECRET:" + body + "}\nthanks", []))
    out += [(t, []) for t in ADDRESS_EDGES]
    out += NAMES_TRIGGER + NAMES_KNOWN + NAMES_FIELDS + [(t, []) for t in NAMES_GAZETTEER]
    out += [(t, []) for t in NAMES_MISSED_BY_DESIGN]
    # mixed, realistic messages with several types
    out += [
        (
            "Hi {NAME:Sarah}, my name is {NAME:Tom Baker}. Email {EMAIL:tom.baker@example.com} "
            "or call {PHONE:+44 20 7946 0958}. Card {CARD:4111 1111 1111 1111}, order #A-55102.",
            [],
        ),
        (
            "Customer: refund to {IBAN:NL91 ABNA 0417 1643 00} please, invoice 2024-0042\n"
            "Agent: done, {NAME:Lena} from billing. Ref 7731-22.",
            [],
        ),
        (
            "Ship to {ADDRESS:55 Water Street, Apt 4B}, phone {PHONE:(415) 555-0101}, "
            "total $84.00 incl. tax",
            [],
        ),
        (
            "deploy with AWS_ACCESS_KEY_ID={SECRET:AKIAIOSFODNN7EXAMPLE} on v3.2.1 "
            "(build 20240115.3)",
            [],
        ),
    ]
    out += [(t, []) for t in NEGATIVES]
    return out


def parse(marked: str) -> tuple[str, list[dict[str, object]]]:
    """Strip `{TYPE:value}` marks; return the text and the gold spans."""
    text_parts: list[str] = []
    spans: list[dict[str, object]] = []
    cursor = 0
    length = 0
    for m in MARK.finditer(marked):
        before = marked[cursor : m.start()]
        text_parts.append(before)
        length += len(before)
        value = m.group(2)
        spans.append({"start": length, "end": length + len(value), "type": m.group(1)})
        text_parts.append(value)
        length += len(value)
        cursor = m.end()
    text_parts.append(marked[cursor:])
    return "".join(text_parts), spans


def render() -> str:
    lines = []
    for number, (marked, known) in enumerate(examples(), start=1):
        text, spans = parse(marked)
        row: dict[str, object] = {"id": f"pii-{number:04d}", "text": text, "spans": spans}
        if known:
            row["known_names"] = known
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
