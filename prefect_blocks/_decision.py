"""GateDecision: a gate's outcome as the gate service verified it, stored as Prefect run input.

Prefect's own ``/resume`` records no sender: anyone who can reach the API can resume a paused
run with any input. Gatehouse resumes runs itself, with a GateDecision built from the gate the
service returned — each decision's principal, display name, e-mail, how their identity was
established (``via``), verdict, comment and time — so the approver is readable afterwards from
the flow run's input (``read_flow_run_input``), and the flow trusts the service, never the input.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from prefect.input import Keyset, RunInput, keyset_from_base_key
from pydantic import BaseModel, ConfigDict, Field

from gate_core import Gate, GateStatus, Verdict

PAUSE_KEY_PREFIX = "gatehouse-"


class DecisionRecord(BaseModel):
    """One person's decision on the gate, as the gate service authenticated them."""

    model_config = ConfigDict(extra="forbid")

    principal_id: str = Field(description="The directory id of the person who decided.")
    display_name: str = Field(default="", description="Their display name in the directory.")
    email: str | None = Field(default=None, description="Their e-mail address, when the directory has one.")
    verdict: str = Field(description="approve or reject.")
    comment: str = Field(default="", description="What they wrote with their decision.")
    at: datetime = Field(description="When the service recorded the decision (UTC).")
    via: str = Field(description="How their identity was established: api-token, oidc, slack, …")
    break_glass: bool = Field(default=False, description="Whether they acted alone as break-glass.")


class GateDecision(RunInput):
    """The gate's outcome: returned by ``ApprovalGate.require()`` and stored as the run's input."""

    gate_id: str = Field(description="The Gatehouse gate this run waited on.")
    status: str = Field(description="APPROVED, REJECTED, EXPIRED or CANCELLED.")
    approvers: list[str] = Field(default_factory=list, description="Who approved, by principal id.")
    comment: str = Field(default="", description="The deciders' comments (a rejection's reason).")
    decided_at: datetime | None = Field(default=None, description="When the gate was decided.")
    decisions: list[DecisionRecord] = Field(default_factory=list, description="Every decision, in order.")
    requester: str = Field(default="", description="Who asked (they could not approve it).")
    rule: str = Field(default="", description="The policy rule that required the approval.")
    service_url: str = Field(default="", description="The gate service that verified the decisions.")

    @property
    def approved(self) -> bool:
        return self.status == GateStatus.APPROVED.value

    @classmethod
    def from_gate(cls, gate: Gate, service_url: str = "") -> GateDecision:
        """The decision a gate carries. A CONSUMED gate was approved (and its step has run)."""
        status = GateStatus.APPROVED if gate.status is GateStatus.CONSUMED else gate.status
        records = [
            DecisionRecord(
                principal_id=d.principal_id,
                display_name=d.display_name,
                email=d.email,
                verdict=d.verdict.value,
                comment=d.comment,
                at=d.at,
                via=d.via.value,
                break_glass=d.break_glass,
            )
            for d in gate.decisions
        ]
        if status is GateStatus.REJECTED:
            comments = [d.comment for d in gate.decisions if d.verdict is Verdict.REJECT and d.comment]
        else:
            comments = [d.comment for d in gate.approvals if d.comment]
        return cls(
            gate_id=gate.id,
            status=status.value,
            approvers=[d.principal_id for d in gate.approvals],
            comment="; ".join(comments),
            decided_at=gate.decided_at,
            decisions=records,
            requester=gate.request.requester,
            rule=gate.rule,
            service_url=service_url,
        )

    def run_input(self) -> dict[str, Any]:
        """The JSON body Prefect stores as the run's input (validated against ``input_schema``)."""
        return dict(self.model_dump(mode="json"))

    @classmethod
    def input_schema(cls) -> str:
        """The JSON schema Prefect validates a resume's input against and its UI renders, in the
        layout Prefect itself saves (nested models under ``definitions``)."""
        schema = cls.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
        if "$defs" in schema:
            schema["definitions"] = schema.pop("$defs")
        return json.dumps(schema)


def pause_key(gate_id: str, attempt: int = 1) -> str:
    """The Prefect pause key for a gate: ``gatehouse-<gate id>`` (``-2``, ``-3`` for re-pauses),
    lowercase because Prefect's run-input keys (derived from it) must be."""
    key = f"{PAUSE_KEY_PREFIX}{gate_id.lower()}"
    return key if attempt == 1 else f"{key}-{attempt}"


def gate_id_from_pause_key(key: str | None) -> str | None:
    """The gate a paused or suspended run waits on, or None for pauses Gatehouse did not make.

    Gate ids are a lowercase ``g`` and a ULID, whose Crockford base32 is case-insensitive: the
    lowercased id in the key maps back to the id exactly as the service writes it."""
    if not key or not key.startswith(PAUSE_KEY_PREFIX):
        return None
    lowered = key[len(PAUSE_KEY_PREFIX) :].split("-", 1)[0]
    return lowered[:1] + lowered[1:].upper() if lowered else None


def input_keyset(state_name: str, key: str) -> Keyset:
    """Prefect's run-input keys for a pause: ``<state name>-<pause key>-{schema,description,response}``.

    ``paused-gatehouse-<gate id>-response`` holds the decision of a paused run,
    ``suspended-gatehouse-<gate id>-response`` that of a suspended one."""
    return keyset_from_base_key(f"{state_name.lower()}-{key}")
