"""Classification detectors on column NAMES (never on values).

A detector is a regular expression searched in the normalised column name — lower case, camelCase
split and every run of non-alphanumerics turned into ``_`` (``billingEMail`` → ``billing_e_mail``,
``Zip Code`` → ``zip_code``) — and the tags it adds. Every built-in detector tags ``pii`` plus its
own tag, so a pii column makes its dataset pii for policy matching. The catalog can switch
built-ins off, replace them by name, or add its own (see ``lineage._catalog``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")

# Token bounds: names are normalised first, so "_" is the only separator left.
_B, _E = r"(?:^|_)", r"(?:$|_)"


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    tags: frozenset[str]

    def matches(self, normalised_name: str) -> bool:
        return self.pattern.search(normalised_name) is not None


def normalise(column_name: str) -> str:
    """``customerEmail`` → ``customer_email``; ``Card No.`` → ``card_no``."""
    split = _CAMEL.sub("_", column_name)
    return _NON_WORD.sub("_", split.lower()).strip("_")


def _detector(name: str, pattern: str, *extra_tags: str) -> Detector:
    return Detector(name, re.compile(pattern), frozenset({"pii", name, *extra_tags}))


BUILTIN: Mapping[str, Detector] = {
    d.name: d
    for d in (
        _detector("email", rf"{_B}(e_?mail(_?addr(ess)?)?|mail_?addr(ess)?)$"),  # not mail_count
        _detector(
            "phone", rf"{_B}(phone|mobile|cell|cellphone|telephone|tel|fax|msisdn)(_?(no|num|number))?{_E}"
        ),
        _detector(
            "ssn", rf"{_B}(ssn|social_security(_no|_num|_number)?|national_id(_no|_number)?|tax_id|nino){_E}"
        ),
        _detector(
            "name",
            r"^(first|last|middle|full|given|family|sur|maiden|display|customer|contact|person|patient"
            r"|employee|user|account_holder|cardholder)?_?name$",
        ),
        _detector(
            "address",
            rf"{_B}(?<!ip_)(?<!mac_)(?<!mail_)(street|street_address|address|addr|address_line_?\d?"
            rf"|zip|zip_?code|postcode|post_code|postal_?code){_E}",
        ),
        _detector("ip", rf"{_B}(ip|ipv4|ipv6|ip_?addr(ess)?|remote_addr|client_ip|source_ip){_E}"),
        _detector(
            "card_number",
            r"(?:^|_)((credit|debit)_?card(_?(no|num|number))?|card(_?(no|num|number))?|cc_?(no|num|number)|pan)$",
        ),
        _detector("dob", rf"{_B}(dob|date_?of_?birth|birth_?date|birthday|birth_?day|born_on){_E}"),
    )
}


@dataclass(frozen=True, slots=True)
class Detectors:
    """The detectors in force: built-ins (minus switched-off ones) plus the catalog's own."""

    active: tuple[Detector, ...] = tuple(BUILTIN.values())

    def tags_for(self, column_name: str) -> frozenset[str]:
        normalised = normalise(column_name)
        found: set[str] = set()
        for detector in self.active:
            if detector.matches(normalised):
                found |= detector.tags
        return frozenset(found)

    @classmethod
    def build(
        cls, *, builtin: bool = True, disabled: Iterable[str] = (), custom: Iterable[Detector] = ()
    ) -> Detectors:
        chosen: dict[str, Detector] = dict(BUILTIN) if builtin else {}
        for name in disabled:
            chosen.pop(name, None)
        for detector in custom:
            chosen[detector.name] = detector  # same name as a built-in: replaces it
        return cls(tuple(chosen.values()))
