"""Redaction behaviour: placeholders, counts, records of several shapes, Amazon Comprehend."""

from __future__ import annotations

import base64
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import BaseModel

from dapt_data.config import ConfigError, parse_config
from dapt_data.pii.comprehend import chunk_text, comprehend_spans
from dapt_data.pii.ner import NameModelError, load_pipeline
from dapt_data.pii.types import PiiType
from dapt_data.redact import RedactionConfig, redact_records, redact_text


def test_redact_text_replaces_values_with_typed_placeholders_and_counts_them() -> None:
    # GIVEN a message with one value of each structured type
    text = (
        "mail jane.doe@example.com, call +44 20 7946 0958, card 4539-1488-0343-6467, "
        "IBAN GB82 WEST 1234 5698 7654 32, key AKIAZ3QJ7XK2M9TQ4WRE"
    )
    # WHEN it is redacted
    result = redact_text(text)
    # THEN every value is a placeholder and the counts name types, never values
    assert result.text == ("mail [EMAIL], call [PHONE], card [CARD], IBAN [IBAN], key [SECRET]")
    assert result.spans_by_type == {"CARD": 1, "EMAIL": 1, "IBAN": 1, "PHONE": 1, "SECRET": 1}


def test_numbered_placeholders_are_consistent_within_a_record() -> None:
    text = "Hi Sarah, it's Tom. Sarah, mail tom@example.com or TOM@example.com."
    result = redact_text(text, RedactionConfig(numbered=True))
    assert result.text == "Hi [NAME_1], it's [NAME_2]. [NAME_1], mail [EMAIL_1] or [EMAIL_1]."


def test_a_card_is_not_also_a_phone_and_look_alikes_stay() -> None:
    text = "card 4539 1488 0343 6467; order 4539 1488 0343 6468; v1.2.3; 2024-01-15; $1,299.00"
    assert redact_text(text).text == (
        "card [CARD]; order 4539 1488 0343 6468; v1.2.3; 2024-01-15; $1,299.00"
    )


def test_types_and_allow_lists_limit_what_is_redacted() -> None:
    text = "write to security@quillsite.example or me@example.com, test card 4242 4242 4242 4242"
    config = RedactionConfig(
        types=frozenset({PiiType.EMAIL, PiiType.CARD}),
        allow_email_domains=frozenset({"quillsite.example"}),
        allow_values=frozenset({"4242 4242 4242 4242"}),
    )
    assert redact_text(text, config).text == (
        "write to security@quillsite.example or [EMAIL], test card 4242 4242 4242 4242"
    )


def test_public_test_values_are_kept_unless_the_domain_turns_the_list_off() -> None:
    # GIVEN a KB sentence teaching the documented test card, and a customer's real-looking card
    text = "use the test card 4242 4242 4242 4242 (or 4242424242424242); mine is 4539148803436467"
    # THEN the public value stays by default and the other is redacted
    assert redact_text(text).text == (
        "use the test card 4242 4242 4242 4242 (or 4242424242424242); mine is [CARD]"
    )
    # AND a domain whose text should not keep them turns the list off
    off = RedactionConfig(allow_public_test_values=False)
    assert redact_text(text, off).text == "use the test card [CARD] (or [CARD]); mine is [CARD]"


def test_iban_is_validated_by_mod_97_not_national_check_digits() -> None:
    # GIVEN IBANs whose ISO 7064 mod-97 check passes but whose national check digits do not
    text = "refund to ES91 3982 5979 1907 4833 7887 or BE14 2675 1555 0425; not GB82 WEST 1234"
    # THEN both are redacted (and the short look-alike is not)
    assert redact_text(text).text == "refund to [IBAN] or [IBAN]; not GB82 WEST 1234"


def test_an_iban_holding_a_luhn_valid_digit_run_is_an_iban() -> None:
    # GIVEN an IBAN whose first 16 BBAN digits are a Luhn-valid Visa-like number
    result = redact_text("IBAN DE04 4514 0604 5246 1416 38 please")
    # THEN the whole IBAN is one [IBAN], not a [CARD]
    assert result.text == "IBAN [IBAN] please"
    assert result.spans_by_type == {"IBAN": 1}


def test_email_local_parts_with_rfc_5322_characters_are_redacted_whole() -> None:
    text = "mail o'brien.pat@example.com, 'quoted@example.org' or a!b#c=d@example.net"
    assert redact_text(text).text == "mail [EMAIL], '[EMAIL]' or [EMAIL]"


def test_jwts_with_base64url_segments_are_redacted_whole() -> None:
    # GIVEN a JWT whose header has a space after '{' (not 'eyJ...') and '-'/'_' in every part
    header = base64.urlsafe_b64encode(b'{ "alg": "HS256", "typ": "JWT" }').decode().rstrip("=")
    payload = base64.urlsafe_b64encode(b'{ "sub": "42", "n": "x~~>>??" }').decode().rstrip("=")
    token = f"{header}.{payload}.dBjft-JeZ4CVP_mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert "-" in token.split(".")[1] or "_" in token.split(".")[1]
    # THEN no part of it stays; a dotted name that is not base64 JSON is left alone
    text = f"auth {token} then call config.settings_loader.reload_all_values"
    assert (
        redact_text(text).text == "auth [SECRET] then call config.settings_loader.reload_all_values"
    )


@pytest.mark.parametrize(
    "number",
    [
        "+1 (999) 555-0123",  # unassigned area code
        "+1 (555) 234-5678",
        "+86 123 4567 8901",  # a range libphonenumber calls unassigned
        "+1 800 000 0000",
        "(999) 555-0123",
    ],
)
def test_well_formed_phone_numbers_in_unassigned_ranges_are_redacted_whole(number: str) -> None:
    assert redact_text(f"call me on {number} today").text == "call me on [PHONE] today"


def test_phone_leniency_does_not_rewrite_look_alikes() -> None:
    text = (
        "Order 2024-01-15-0042 shipped 2024-01-15; v1.2.3 and 10.0.19045; ZIP+4 90210-1234; "
        "order number 7719340025; build 20240115.3; 3 x (123) 45"
    )
    assert redact_text(text).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok thanks Contact: support@quillsite.example", "ok thanks Contact: [EMAIL]"),
        ("Regards,\nIBAN DE89 3704 0044 0532 0130 00", "Regards,\nIBAN [IBAN]"),
        ("Thanks\nIBAN: DE89 3704 0044 0532 0130 00", "Thanks\nIBAN: [IBAN]"),
        ("Thanks FAQ!", "Thanks FAQ!"),
        ("Hi Tom: the fix is live", "Hi [NAME]: the fix is live"),  # a known name stays one
    ],
)
def test_labels_and_acronyms_after_a_greeting_are_not_names(text: str, expected: str) -> None:
    assert redact_text(text).text == expected


@pytest.mark.parametrize(
    "address",
    [
        "742 Evergreen Terrace, Springfield, Illinois 62704",
        "742 Evergreen Terrace\nSpringfield, IL 62704",
        "12 Oak Lane, Austin TX 78701",
        "12 Oak Lane Springfield IL 62704",
        "12 Oak Lane, Toronto, ON M5V 2T6",
        "12 Oak Lane, Manchester, M1 1AE, UK",
        "12 Oak Lane, Dublin 8, D08 XY12",
        "9 Elm Court, Melbourne VIC 3000, Australia",
        "Hauptstraße 5 10115 Berlin",
        "Hauptstraße 5, D-10115 Berlin",
        "12 rue de la Paix 75002 Paris",
    ],
)
def test_the_city_and_postal_code_after_a_street_are_redacted_with_it(address: str) -> None:
    assert redact_text(f"ship to {address} thanks").text == "ship to [ADDRESS] thanks"


def test_words_after_a_street_that_are_not_a_place_stay() -> None:
    text = "I moved to 12 Oak Lane in 2019 and 4 Privet Drive, Thanks again"
    assert redact_text(text).text == "I moved to [ADDRESS] in 2019 and [ADDRESS], Thanks again"


@pytest.mark.parametrize(
    "address",
    [
        "Apt 2C, 19 Harbor View Road, Portland, ME 04101, USA",  # unit before the street
        "Suite 12, Lakeside House, 4 Mill Lane, Bristol BS1 5TR",  # unit and building
        "Prinsengracht 480-2, 1017 KH Amsterdam, Netherlands",  # Dutch, a country after it
        "Storgatan 12, 114 51 Stockholm",
        "Avenida da Liberdade 110, 1269-046 Lisboa",  # street type first
        "Calle Mayor 3, 2º derecha, 28013 Madrid, España",  # a unit after the street
        "Via Roma 12, Int. 3, 00184 Roma RM, Italia",
        "ul. Floriańska 15/3, 31-019 Kraków, Polska",
        "Rua Oscar Freire 900 / São Paulo - SP / 01426-001",  # ' / ' for line breaks
        "1-2-3 Nishi Shinjuku, Shinjuku-ku, Tokyo 160-0023",  # Japanese block number
        "Plot 7, Ring Road, Accra, Ghana",  # a numbered unit, then a street with no number
        "14 Brook Street / Leeds LS1 2AB / United Kingdom",
        "88 MG Road, Bengaluru, Karnataka 560001, India",
    ],
)
def test_units_buildings_and_continental_streets_are_redacted_whole(address: str) -> None:
    # Each failed before: the unit or building before the street, the street written first
    # or without a suffix, the ' / ' separators, the postal code format or the country
    # after the locality was left in the text.
    assert redact_text(f"please ship to {address} thanks").text == "please ship to [ADDRESS] thanks"


def test_words_that_look_like_continental_streets_stay() -> None:
    text = "I paid via Stripe 3 times, see Smith et al. Nature 2019, and 2-3 Business Days"
    assert redact_text(text).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # listed names with no cue: Faker's multi-locale lists, not only the gazetteer
        ("Teodor Lindqvist approved the refund.", "[NAME] approved the refund."),
        ("The logo came from Zofia Wiśniewska.", "The logo came from [NAME]."),
        ("Ask Oksana Petrenko (romanised Cyrillic).", "Ask [NAME] (romanised Cyrillic)."),
        ("Per Ms. Okafor's email, go ahead.", "Per Ms. [NAME]'s email, go ahead."),
        ("Thanks, John P. Harrington", "Thanks, [NAME]"),
        # lower-case chat: a listed first name that is no English word
        ("can u ask priya about the dns", "can u ask [NAME] about the dns"),
        # ambiguous names listed beside a found one, and repeats of a found name
        ("Admins: Ingeborg, Hazel and Penny.", "Admins: [NAME], [NAME] and [NAME]."),
        ("cc Kenji Watanabe, Arash Farahani", "cc [NAME], [NAME]"),
        ("Watanabe said yes; Kenji Watanabe signed.", "[NAME] said yes; [NAME] signed."),
    ],
)
def test_names_in_running_text_without_a_cue(text: str, expected: str) -> None:
    assert redact_text(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "Will it work on the Grace period? Hope this helps. Mark as paid. Rose gold.",
        "We love the Luna theme and the Stella template.",
        "Our Victoria Street store and Wells Fargo and Sydney and San Francisco.",
        "I'll check. Amazon, Shopify and PayPal are fine.",
        "the admin and the support team can log in",
    ],
)
def test_capitalised_words_that_are_not_people_stay(text: str) -> None:
    assert redact_text(text).text == text


def test_secret_assignments_need_entropy_but_passwords_do_not() -> None:
    text = "api_key=settings_value token=Zr8kQ2vLx9PmWt4N password: hunter2!Qz"
    assert redact_text(text).text == "api_key=settings_value token=[SECRET] password: [SECRET]"


def test_private_key_blocks_are_redacted_whole() -> None:
    text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbCd\n-----END RSA PRIVATE KEY-----\nok"
    assert redact_text(text).text == "key:\n[SECRET]\nok"


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="secret_min_entropy"):
        RedactionConfig.model_validate({"secret_min_entropy": -1})
    with pytest.raises(ValueError, match="detector"):
        RedactionConfig.model_validate({"detector": "spacy"})


class Turn(BaseModel):
    role: str
    text: str
    name: str | None = None


class ChatRecord(BaseModel):
    source_id: str
    text: str
    turns: list[Turn]
    meta: dict[str, str]


@dataclass(frozen=True)
class PlainRecord:
    source_id: str
    text: str


def test_redact_records_returns_copies_of_models_dataclasses_and_dicts() -> None:
    # GIVEN a chat whose participants are named only in metadata and turns
    chat = ChatRecord(
        source_id="chats:1",
        text="Customer: hi, zbigniew here\nAgent: hello Zbigniew, Ngozi speaking",
        turns=[
            Turn(role="customer", text="hi, zbigniew here", name="Zbigniew Nowak"),
            Turn(role="agent", text="hello Zbigniew, Ngozi speaking"),
        ],
        meta={"agent_name": "Ngozi"},
    )
    plain = PlainRecord(source_id="kb:1", text="call 415-555-0132")
    row: dict[str, Any] = {"source_id": "x:1", "text": "mail a@example.com", "label": "l"}
    # WHEN the records are redacted
    (new_chat, new_plain, new_row), report = redact_records([chat, plain, row])
    # THEN names from metadata are found in any case, inputs are untouched, and counts add up
    assert isinstance(new_chat, ChatRecord)
    assert new_chat.text == "Customer: hi, [NAME] here\nAgent: hello [NAME], [NAME] speaking"
    assert [t.text for t in new_chat.turns] == ["hi, [NAME] here", "hello [NAME], [NAME] speaking"]
    assert chat.turns[0].text == "hi, zbigniew here"
    assert new_plain == PlainRecord(source_id="kb:1", text="call [PHONE]")
    assert new_row == {"source_id": "x:1", "text": "mail [EMAIL]", "label": "l"}
    assert report.records == 3
    assert report.records_redacted == 3
    assert report.spans_by_type == {"EMAIL": 1, "NAME": 6, "PHONE": 1}


def test_redact_records_names_the_record_with_a_bad_text_field() -> None:
    with pytest.raises(TypeError, match=r"record 'x:9' has field 'text' of type int"):
        redact_records([{"source_id": "x:9", "text": 5}])


def test_chunk_text_respects_the_byte_limit_and_cuts_at_whitespace() -> None:
    text = "héllo wörld " * 10
    chunks = chunk_text(text, 30)
    assert "".join(c for _, c in chunks) == text
    assert all(len(c.encode("utf-8")) <= 30 for _, c in chunks)
    assert all(c.endswith(" ") for _, c in chunks)
    assert [o for o, _ in chunks] == [
        sum(len(c) for _, c in chunks[:i]) for i in range(len(chunks))
    ]
    with pytest.raises(ValueError, match="'max_bytes' = 3"):
        chunk_text(text, 3)


# moto's Comprehend returns one canned answer whatever the text, so it cannot check offsets;
# botocore's Stubber checks our exact requests and feeds exact responses.
def test_comprehend_spans_are_shifted_per_chunk_and_mapped_to_placeholders() -> None:
    client = boto3.client("comprehend", region_name="us-east-1")
    text = "I am Ana Lima. " + "x " * 10 + "call 555-0100 on 2024-01-01"
    first, second = chunk_text(text, 32)[:2]
    rest = text[second[0] :]
    with Stubber(client) as stub:
        stub.add_response(
            "detect_pii_entities",
            {"Entities": [{"Type": "NAME", "Score": 0.99, "BeginOffset": 5, "EndOffset": 13}]},
            {"Text": first[1], "LanguageCode": "en"},
        )
        stub.add_response(
            "detect_pii_entities",
            {
                "Entities": [
                    {
                        "Type": "PHONE",
                        "Score": 0.9,
                        "BeginOffset": rest.index("555"),
                        "EndOffset": rest.index("555") + 8,
                    },
                    {
                        "Type": "DATE_TIME",
                        "Score": 0.9,
                        "BeginOffset": rest.index("2024"),
                        "EndOffset": rest.index("2024") + 10,
                    },
                    {"Type": "ADDRESS", "Score": 0.2, "BeginOffset": 0, "EndOffset": 4},
                ]
            },
            {"Text": rest, "LanguageCode": "en"},
        )
        spans = comprehend_spans(text, client, max_bytes=32)
        stub.assert_no_pending_responses()
    assert [(text[s.start : s.end], s.type) for s in spans] == [
        ("Ana Lima", PiiType.NAME),
        ("555-0100", PiiType.PHONE),
    ]


def test_comprehend_detector_is_merged_with_secret_patterns() -> None:
    client = boto3.client("comprehend", region_name="us-east-1")
    text = "Ana Lima: my token is ghp_" + "a1B2" * 9
    config = RedactionConfig(detector="comprehend")
    with Stubber(client) as stub:
        stub.add_response(
            "detect_pii_entities",
            {"Entities": [{"Type": "NAME", "Score": 0.98, "BeginOffset": 0, "EndOffset": 8}]},
            {"Text": text, "LanguageCode": "en"},
        )
        result = redact_text(text, config, comprehend=client)
    assert result.text == "[NAME]: my token is [SECRET]"
    assert result.spans_by_type == {"NAME": 1, "SECRET": 1}


class _Entity:
    def __init__(self, text: str, value: str) -> None:
        self.start_char = text.index(value)
        self.end_char = self.start_char + len(value)
        self.label_ = "PERSON"


def test_a_name_model_adds_person_names_the_rules_do_not_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a name model (a stand-in for a spaCy pipeline) that tags a real name that no name
    # list holds and the look-alikes spaCy models tag as PERSON on the labeled set
    text = (
        "Priyanka Raghunathan approved it. Tel: 555. Mark as read. Quillsite Pro. Batch 2023-11-30"
    )
    tagged = ["Priyanka Raghunathan", "Tel", "Mark", "Quillsite Pro", "Batch 2023-11-30"]

    def nlp(value: str) -> SimpleNamespace:
        return SimpleNamespace(ents=[_Entity(value, t) for t in tagged])

    monkeypatch.setattr("dapt_data.redact.load_pipeline", lambda name: nlp)
    # WHEN the text is redacted with and without it
    with_model = redact_text(text, RedactionConfig(name_model="en_test_model")).text
    without = redact_text(text).text
    # THEN only the name is added; label, verb, product and build id stay
    assert with_model == "[NAME] approved it. " + text.split(" it. ", 1)[1]
    assert without == text


def test_a_name_model_that_cannot_load_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    sources = [{"name": "a", "path": str(tmp_path / "a.jsonl"), "format": "jsonl"}]
    options = {"options": {"name_model": "en_no_such_model"}}
    # GIVEN spaCy is missing  THEN the config names the option and what to install
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: None if name == "spacy" else real_find_spec(name, *a),
    )
    with pytest.raises(
        ConfigError, match=r"redact.options.name_model = 'en_no_such_model': needs spaCy"
    ):
        parse_config({"output": str(tmp_path), "sources": sources, "redact": options}, "t")
    # GIVEN spaCy is there but the model is not  THEN the same, naming the model
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: object() if name == "spacy" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"neither an installed package nor a folder"):
        parse_config({"output": str(tmp_path), "sources": sources, "redact": options}, "t")
    with pytest.raises(NameModelError, match="neither an installed package"):
        load_pipeline("en_no_such_model")
