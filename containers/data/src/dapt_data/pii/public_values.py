"""Well-known public test values: published so that anyone may type them, owned by no one.

A product's documentation teaches them ("place a test order with the card 4242 4242 4242
4242"), and a benchmark may ask about them; redacting them would train the model on a
placeholder where the fact is. `RedactionConfig.allow_public_test_values` (on by default, a
per-domain setting in the pipeline's `redact.options`) keeps them. Sources, each a page that
publishes the value as a test or example value:

- payment cards: Stripe's testing page (docs.stripe.com/testing), the Visa/Mastercard/Amex/
  Discover/JCB/Diners/UnionPay numbers that Stripe, Adyen and Braintree list for test mode;
- AWS: the example access key pair of the IAM and CLI documentation.

Not here on purpose: `example.com`-style email addresses. RFC 2606 reserves the domains, but
fictional data (and our own labeled set) uses them as stand-ins for real customers' addresses,
so keeping them would teach a model to reproduce "customer addresses"; give a domain's own
public addresses with `allow_email_domains` or `allow_values` instead.
"""

from __future__ import annotations

PUBLIC_TEST_VALUES: frozenset[str] = frozenset(
    {
        # Visa
        "4242424242424242",
        "4000056655665556",
        "4111111111111111",
        "4012888888881881",
        "4000002760003184",
        "4000000000003220",
        "4000000000009995",
        "4000000000000002",
        # Mastercard
        "5555555555554444",
        "2223003122003222",
        "5200828282828210",
        "5105105105105100",
        "5454545454545454",
        # American Express
        "378282246310005",
        "371449635398431",
        # Discover, Diners, JCB, UnionPay
        "6011111111111117",
        "6011000990139424",
        "30569309025904",
        "36227206271667",
        "3566002020360505",
        "6200000000000005",
        # AWS documentation's example key pair
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
)
"""Compact forms (no spaces or dashes): `public_key` of a value is looked up here."""


def public_key(value: str) -> str:
    """A value as `PUBLIC_TEST_VALUES` spells it: spaces and dashes removed."""
    return value.replace(" ", "").replace("-", "")
