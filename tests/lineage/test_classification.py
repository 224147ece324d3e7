"""Classification: name detectors, the catalog file, and tags reaching the gate policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate_core import DatasetRef, GateRequest, evaluate
from gate_core.testing import example_directory, example_policy
from lineage import Catalog, CatalogError, ColumnInfo, classify
from lineage._detectors import Detectors

DETECTED = {
    "email": {"pii", "email"},
    "customerEmail": {"pii", "email"},
    "email_address": {"pii", "email"},
    "phone_number": {"pii", "phone"},
    "mobileNo": {"pii", "phone"},
    "ssn": {"pii", "ssn"},
    "social_security_number": {"pii", "ssn"},
    "first_name": {"pii", "name"},
    "lastName": {"pii", "name"},
    "name": {"pii", "name"},
    "full_name": {"pii", "name"},
    "street": {"pii", "address"},
    "billing_address": {"pii", "address"},
    "Zip Code": {"pii", "address"},
    "postcode": {"pii", "address"},
    "ip_address": {"pii", "ip"},
    "client_ip": {"pii", "ip"},
    "card_number": {"pii", "card_number"},
    "cc_number": {"pii", "card_number"},
    "pan": {"pii", "card_number"},
    "dob": {"pii", "dob"},
    "date_of_birth": {"pii", "dob"},
    "birthDate": {"pii", "dob"},
}
NOT_DETECTED = [
    "id",
    "amount",
    "product_name",
    "file_name",
    "card_type",
    "mail_count",
    "zipper",
    "panel",
    "city",
]


@pytest.mark.parametrize(("column", "tags"), DETECTED.items())
def test_builtin_detectors_tag_pii_by_column_name(column: str, tags: set[str]) -> None:
    assert Detectors().tags_for(column) == tags


@pytest.mark.parametrize("column", NOT_DETECTED)
def test_builtin_detectors_leave_other_names_alone(column: str) -> None:
    assert Detectors().tags_for(column) == frozenset()


CATALOG = """
version: 1
datasets:
  warehouse/customers:
    tags: [customer]
    columns:
      notes: [pii, free_text]
  "warehouse/hr_*":
    tags: [hr, confidential]
builtin_detectors: true
detectors:
  name: false
  employee_id:
    pattern: '(^|_)emp(loyee)?_?id$'
    tags: [pii, employee_id]
"""


def test_catalog_declares_and_detectors_add_and_the_dataset_takes_the_union() -> None:
    catalog = Catalog.parse(CATALOG, source="catalog.yaml")
    result = catalog.classify(
        DatasetRef.parse("warehouse/customers#finance"),
        [
            ColumnInfo(name="notes", type="str"),
            ColumnInfo(name="email"),
            ColumnInfo(name="name"),
            ColumnInfo(name="n"),
        ],
    )
    tags = {c.name: set(c.tags) for c in result.columns}
    assert tags == {"notes": {"pii", "free_text"}, "email": {"pii", "email"}, "name": set(), "n": set()}
    assert result.dataset.tags == {"finance", "customer", "pii", "free_text", "email"}
    hr = catalog.classify(DatasetRef.parse("warehouse/hr_people"), [ColumnInfo(name="employeeId")])
    assert hr.tags == {"hr", "confidential", "pii", "employee_id"}
    assert catalog.classify(DatasetRef.parse("warehouse/orders")).tags == frozenset()


def test_builtin_detectors_can_be_switched_off() -> None:
    catalog = Catalog.parse("builtin_detectors: false\n")
    assert catalog.classify(DatasetRef.parse("a/b"), [ColumnInfo(name="email")]).tags == frozenset()
    assert Catalog.parse("").classify(DatasetRef.parse("a/b"), [ColumnInfo(name="email")]).tags == {
        "pii",
        "email",
    }


def test_a_pii_column_makes_the_gate_policy_match_the_pii_rule() -> None:
    classified = classify("warehouse/customers", ["id", "email"])
    request = GateRequest(action="export", datasets=(classified.dataset,), requester="alice")
    decision = evaluate(request, example_directory().get("alice"), example_policy())
    assert decision.rule == "pii-export"
    plain = classify("warehouse/orders", ["id", "amount"])
    request = GateRequest(action="export", datasets=(plain.dataset,), requester="alice", environment="dev")
    assert evaluate(request, example_directory().get("alice"), example_policy()).rule == "dev-export"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets: [oops", "catalog.yaml: line 1, column"),
        ("- just\n- a list\n", "catalog.yaml: a catalog must be a mapping"),
        ("version: 2\n", "catalog.yaml: version:"),
        (
            "datasets:\n  customers:\n    tags: [pii]\n",
            "catalog.yaml: datasets: 'customers' is not NAMESPACE/NAME",
        ),
        (
            "datasets:\n  a/b:\n    tags: ['Not A Tag!']\n",
            "catalog.yaml: datasets.a/b.tags: tag 'not a tag!'",
        ),
        ("datasets:\n  a/b:\n    colour: red\n", "catalog.yaml: datasets.a/b.colour: Extra inputs"),
        (
            "detectors:\n  x:\n    pattern: '('\n    tags: [pii]\n",
            "catalog.yaml: detectors.x.pattern: not a regular",
        ),
        ("detectors:\n  x:\n    pattern: 'a'\n    tags: []\n", "catalog.yaml: detectors.x.tags"),
        ("detectors:\n  name: true\n", "catalog.yaml: detectors.name"),
        ("unknown_key: 1\n", "catalog.yaml: unknown_key: Extra inputs"),
    ],
)
def test_a_bad_catalog_names_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)
    assert str(caught.value).startswith(str(tmp_path) + "/" + message.split(": ", 1)[0]), str(caught.value)
    assert message.split(": ", 1)[1] in str(caught.value)


def test_missing_catalog_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"absent\.yaml: cannot read catalog file"):
        Catalog.load(tmp_path / "absent.yaml")


def test_catalog_location_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GATEHOUSE_HOME", str(home))
    assert Catalog.from_settings().source == "<built-in>"
    (home / "catalog.yaml").write_text("datasets:\n  a/b: {tags: [secret]}\n", encoding="utf-8")
    assert Catalog.from_settings().classify(DatasetRef.parse("a/b")).tags == {"secret"}
    other = tmp_path / "other.yaml"
    other.write_text("datasets:\n  a/b: {tags: [other]}\n", encoding="utf-8")
    monkeypatch.setenv("GATEHOUSE_LINEAGE_CATALOG", str(other))
    assert Catalog.from_settings().classify(DatasetRef.parse("a/b")).tags == {"other"}
