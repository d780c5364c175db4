"""Fleet's tables, as SQLModel families: `XBase` holds the fields, `XRow` is the table.

What a fleet file describes (components, versions, channels, instances,
pins, advisories, risk acceptances, security deadlines) is current state and
may be updated; what happened (manifest revisions, deployment records,
approvals, audit events) is history and is only ever appended to (a
manifest's status moves forward, nothing is deleted). Instances are retired,
never deleted, so their history keeps its subject.

Rows refer to each other by name (instance, component, channel): history
outlives the objects it names, and the repositories keep references valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from fleet.db.types import UTCDateTime

__all__ = [
    "AdvisoryRow",
    "ApiTokenRow",
    "ApprovalCodeRow",
    "ApprovalRequestRow",
    "ApprovalRow",
    "AuditEventRow",
    "ChannelRow",
    "ComponentRow",
    "ConsoleSessionRow",
    "DeploymentRow",
    "DriftRow",
    "InstanceLockRow",
    "InstanceRow",
    "ManifestRow",
    "PinRow",
    "RiskAcceptanceRow",
    "SecurityDeadlineRow",
    "VersionRow",
    "metadata",
    "table_of",
]

metadata = SQLModel.metadata


# --- what the fleet is -------------------------------------------------------


class ComponentBase(SQLModel):
    name: str = Field(max_length=63, unique=True)
    position: int = Field(description="resolution order, 0 first")


class ComponentRow(ComponentBase, table=True):
    __tablename__ = "component"
    id: int | None = Field(default=None, primary_key=True)


class VersionBase(SQLModel):
    component: str = Field(max_length=63)
    version: str = Field(max_length=100, description="normalised PEP 440")
    released_at: datetime = Field(sa_type=UTCDateTime)
    artifact_url: str | None = Field(default=None, sa_type=Text)
    sha256: str | None = Field(default=None, max_length=64)
    requires: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    yanked: bool = False
    yanked_reason: str | None = Field(default=None, sa_type=Text)


class VersionRow(VersionBase, table=True):
    __tablename__ = "component_version"
    __table_args__ = (UniqueConstraint("component", "version"),)
    id: int | None = Field(default=None, primary_key=True)


class ChannelBase(SQLModel):
    name: str = Field(max_length=63, unique=True)
    policy: str = Field(max_length=20)
    constraint: str = Field(default="", max_length=200)
    allow_prereleases: bool = False
    soak_seconds: int = 0
    window_cron: str | None = Field(default=None, max_length=100)
    window_duration_seconds: int | None = None
    window_timezone: str | None = Field(default=None, max_length=64)
    approvals_required: int = 1
    approval_timeout_seconds: int = 72 * 3600
    verified_approvals: bool = Field(
        default=False, description="only verified approvals count (self-declared are recorded)"
    )


class ChannelRow(ChannelBase, table=True):
    __tablename__ = "channel"
    id: int | None = Field(default=None, primary_key=True)


class InstanceBase(SQLModel):
    name: str = Field(max_length=63, unique=True)
    customer: str = Field(sa_type=Text)
    channel: str = Field(max_length=63, index=True)
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    policy_override: str | None = Field(default=None, max_length=20)
    target: str | None = Field(default=None, sa_type=Text, description="a target block name")
    current: dict[str, str] = Field(default_factory=dict, sa_type=JSON)


class InstanceRow(InstanceBase, table=True):
    __tablename__ = "instance"
    id: int | None = Field(default=None, primary_key=True)
    current_revision: int | None = Field(default=None, description="the deployed revision")
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PinBase(SQLModel):
    scope: str = Field(max_length=80)
    component: str = Field(max_length=63)
    spec: str = Field(max_length=200)
    reason: str = Field(sa_type=Text)
    author: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PinRow(PinBase, table=True):
    __tablename__ = "pin"
    __table_args__ = (UniqueConstraint("scope", "component", "spec"),)
    id: int | None = Field(default=None, primary_key=True)


class AdvisoryBase(SQLModel):
    advisory_id: str = Field(max_length=200)
    component: str = Field(max_length=63)
    severity: str = Field(max_length=10)
    published_at: datetime = Field(sa_type=UTCDateTime)
    aliases: list[str] = Field(default_factory=list, sa_type=JSON)
    summary: str | None = Field(default=None, sa_type=Text)
    ranges: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    versions: list[str] = Field(default_factory=list, sa_type=JSON)


class AdvisoryRow(AdvisoryBase, table=True):
    __tablename__ = "advisory"
    __table_args__ = (UniqueConstraint("advisory_id", "component"),)
    id: int | None = Field(default=None, primary_key=True)


class RiskAcceptanceBase(SQLModel):
    instance: str = Field(max_length=63)
    advisory: str = Field(max_length=200)
    by: str = Field(max_length=200)
    reason: str = Field(sa_type=Text)
    until: datetime = Field(sa_type=UTCDateTime)


class RiskAcceptanceRow(RiskAcceptanceBase, table=True):
    __tablename__ = "risk_acceptance"
    __table_args__ = (UniqueConstraint("instance", "advisory"),)
    id: int | None = Field(default=None, primary_key=True)


class SecurityDeadlineRow(SQLModel, table=True):
    """A severity's deadline after publication; absent: the default, NULL: report only."""

    __tablename__ = "security_deadline"
    severity: str = Field(max_length=10, primary_key=True)
    seconds: int | None = None


# --- what happened -----------------------------------------------------------


class ManifestBase(SQLModel):
    instance: str = Field(max_length=63)
    number: int = Field(description="revision number, 1, 2, 3 ... per instance")
    components: dict[str, str] = Field(sa_type=JSON)
    base: dict[str, str] = Field(
        default_factory=dict, sa_type=JSON, description="what the instance ran when planned"
    )
    hash: str = Field(max_length=64, description="sha256 of the canonical JSON of components")
    parent: int | None = Field(default=None, description="the revision it was planned from")
    rollback_of: int | None = Field(default=None, description="the revision a rollback restores")
    status: str = Field(max_length=20)
    decision: str | None = Field(default=None, max_length=30)
    explanation: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    warnings: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: str = Field(max_length=200)
    flow_run_id: str | None = Field(default=None, max_length=64)
    status_at: datetime = Field(sa_type=UTCDateTime, description="when status last changed")
    deployed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ManifestRow(ManifestBase, table=True):
    __tablename__ = "manifest"
    __table_args__ = (UniqueConstraint("instance", "number"),)
    id: int | None = Field(default=None, primary_key=True)


class DeploymentBase(SQLModel):
    instance: str = Field(max_length=63)
    manifest_number: int
    flow_run_id: str = Field(max_length=64, index=True)
    started_by: str = Field(max_length=200)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str = Field(default="running", max_length=20)
    error: str | None = Field(default=None, sa_type=Text)


class DeploymentRow(DeploymentBase, table=True):
    __tablename__ = "deployment"
    __table_args__ = (UniqueConstraint("instance", "flow_run_id"),)
    id: int | None = Field(default=None, primary_key=True)


class ApprovalBase(SQLModel):
    instance: str = Field(max_length=63, index=True)
    manifest_number: int | None = None
    manifest_hash: str | None = Field(
        default=None, max_length=64, description="the revision's hash the approver was shown"
    )
    flow_run_id: str | None = Field(default=None, max_length=64, index=True)
    approver: str = Field(max_length=200)
    decision: str = Field(max_length=20, description="approve, reject or waived")
    comment: str = Field(default="", sa_type=Text)
    at: datetime = Field(sa_type=UTCDateTime)
    verified: bool = Field(
        default=False,
        description="true: a credential Fleet checked (an API token, a one-time approval "
        "code); false: self-declared (a name typed into a form)",
    )


class ApprovalRow(ApprovalBase, table=True):
    __tablename__ = "approval"
    id: int | None = Field(default=None, primary_key=True)


class ApprovalRequestRow(SQLModel, table=True):
    """What one run waits for on one instance: approvals of one revision, by a deadline."""

    __tablename__ = "approval_request"
    __table_args__ = (UniqueConstraint("flow_run_id", "instance"),)
    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(max_length=64, index=True)
    instance: str = Field(max_length=63)
    manifest_number: int
    manifest_hash: str = Field(max_length=64)
    approvals_required: int
    verified_only: bool = False
    requested_by: str = Field(max_length=200)
    opened_at: datetime = Field(sa_type=UTCDateTime)
    deadline: datetime = Field(sa_type=UTCDateTime)


class ApprovalCodeRow(SQLModel, table=True):
    """A one-time approval code: bound to one run and one principal; only its hash is kept."""

    __tablename__ = "approval_code"
    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    flow_run_id: str = Field(max_length=64, index=True)
    principal: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_flow_run_id: str | None = Field(default=None, max_length=64)
    used_key: str | None = Field(default=None, max_length=64, description="the form's pause key")


class InstanceLockRow(SQLModel, table=True):
    """An instance's lock: the run that holds it, and until when unless renewed.

    Operational state, not history: a row is replaced when the lock changes
    hands and deleted when it is released."""

    __tablename__ = "instance_lock"
    instance: str = Field(max_length=63, primary_key=True)
    run: str = Field(max_length=64, index=True, description="the holding flow run id")
    holder: str = Field(max_length=200, description="host:pid of the holding process")
    acquired_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class ApiTokenRow(SQLModel, table=True):
    """REST API tokens (used by the API; only the token's hash is stored)."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    role: str = Field(max_length=20)
    token_hash: str = Field(max_length=128, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEventRow(SQLModel, table=True):
    """One link of the audit chain; `details` is stored as its canonical JSON text."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_subject_seq", "subject", "seq"),)
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    subject: str = Field(max_length=300)
    details: str = Field(sa_type=Text)
    flow_run_id: str | None = Field(default=None, max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class ConsoleSessionRow(SQLModel, table=True):
    """A signed-in console session (only the hash of its cookie is stored).

    The principal is the name of the API token that signed in; its role is
    read from that token on every request, so a revoked token ends its sessions.
    """

    __tablename__ = "console_session"
    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(max_length=64, unique=True)
    principal: str = Field(max_length=100, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DriftRow(SQLModel, table=True):
    """What the last drift check found on an instance that runs something else than
    Fleet recorded (current state: the row goes when a check finds it in sync)."""

    __tablename__ = "instance_drift"
    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=63, unique=True)
    observed_at: datetime = Field(sa_type=UTCDateTime)
    flow_run_id: str | None = Field(default=None, max_length=64)
    revision: int | None = None
    differences: list[list[str | None]] = Field(default_factory=list, sa_type=JSON)
    summary: str = Field(default="", sa_type=Text)


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy `Table` of a table model (for Core statements: bulk and typed)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]
