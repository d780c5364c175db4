"""Request and response bodies of the REST API (what OpenAPI shows).

Response models mirror the `to_json()` of the service and core values they
carry, so the API says the same as the CLI's `--json` (the plan preview is
exactly `fleet plan --json`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from fleet.core.durations import check_instant, parse_duration
from fleet.core.errors import InputError
from fleet.core.rollout import Amount
from fleet.core.text import REASON_LIMIT, check_text

T = TypeVar("T")


def _core(rule: Callable[[Any], object]) -> AfterValidator:
    """A core rule as a field check: its `InputError` is the field's error (422)."""

    def check(value: Any) -> Any:
        try:
            rule(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value

    return AfterValidator(check)


Instant = Annotated[
    AwareDatetime,
    _core(check_instant),
    Field(description="ISO 8601 with a zone, from 1970-01-01T00:00:00Z up to 9000-01-01."),
]
"""A time in Fleet's range (`fleet.core.durations.check_instant`)."""
Reason = Annotated[
    str,
    Field(max_length=REASON_LIMIT, description="At most 4096 bytes of UTF-8."),
    _core(lambda value: check_text(value, what="reason", required=False)),
]
"""A reason or comment: at most 4 KB (`fleet.core.text.REASON_LIMIT`)."""
DurationText = Annotated[str, Field(max_length=40), _core(parse_duration)]
AmountText = Annotated[str, Field(max_length=20), _core(Amount.parse)]

PolicyName = Literal["auto-update", "manual-approval", "frozen"]
RoleName = Literal["viewer", "operator", "approver", "admin"]
SeverityName = Literal["critical", "high", "medium", "low"]


class Body(BaseModel):
    """Request bodies refuse unknown fields (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list; `total` counts every item (null when not counted)."""

    items: list[T]
    total: int | None
    limit: int
    offset: int


class Message(BaseModel):
    detail: str = Field(examples=["pin 3 removed"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# --- components and versions ------------------------------------------------


class ComponentPublic(BaseModel):
    name: str = Field(examples=["api"])
    position: int = Field(description="Resolution order, 0 first.", examples=[0])
    versions: list[str] = Field(examples=[["2.4.0", "2.5.0"]])


class ArtifactPublic(BaseModel):
    url: str = Field(examples=["https://artifacts.example.com/api-2.5.0.tar.gz"])
    sha256: str | None = Field(default=None, examples=["a" * 64])


class VersionPublic(BaseModel):
    component: str = Field(examples=["api"])
    version: str = Field(examples=["2.5.0"])
    released_at: datetime
    artifact: ArtifactPublic | None = None
    requires: dict[str, str] = Field(default_factory=dict, examples=[{"web": ">=2.4,<3"}])
    yanked: bool = False
    yanked_reason: str | None = None


class VersionCreate(Body):
    version: str = Field(min_length=1, max_length=100, examples=["2.5.0"])
    released_at: Instant | None = Field(
        default=None, description="Default: now.", examples=["2026-11-20T10:00:00Z"]
    )
    artifact: ArtifactPublic | None = None
    requires: dict[str, str] = Field(default_factory=dict, examples=[{"web": ">=2.4,<3"}])
    yanked: bool = False
    yanked_reason: Reason | None = None


# --- channels and instances --------------------------------------------------


class WindowPublic(BaseModel):
    cron: str = Field(examples=["0 2 * * SAT"])
    duration: str = Field(examples=["4h"])
    timezone: str = Field(default="UTC", examples=["Europe/Berlin"])


class ChannelBody(Body):
    policy: PolicyName = Field(examples=["manual-approval"])
    constraint: str | None = Field(default=None, max_length=200, examples=["~=2.3"])
    allow_prereleases: bool = False
    soak: DurationText = Field(default="0s", examples=["2d"])
    maintenance_window: WindowPublic | None = None
    approvals_required: int = Field(default=1, ge=1, le=100, examples=[2])
    approval_timeout: DurationText = Field(default="72h", examples=["72h"])
    verified_approvals: bool = Field(
        default=False,
        description="Only verified approvals count (an API token, a one-time approval code); "
        "names typed into the Prefect UI's form are recorded but do not count.",
    )


class ChannelPublic(ChannelBody):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(examples=["stable"])


class InstancePublic(BaseModel):
    name: str = Field(examples=["acme-prod"])
    customer: str = Field(examples=["Acme Corp"])
    channel: str = Field(examples=["stable"])
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"region": "eu"}])
    policy_override: PolicyName | None = None
    target: str | None = Field(default=None, examples=["acme-prod"])
    current: dict[str, str] = Field(default_factory=dict, examples=[{"api": "2.4.0"}])


class PolicyBody(Body):
    policy_override: PolicyName | None = Field(
        description="The instance's own policy; null: follow its channel.", examples=["frozen"]
    )


# --- pins ----------------------------------------------------------------------


class PinPublic(BaseModel):
    id: int = Field(examples=[3])
    scope: str = Field(examples=["channel:stable"])
    component: str = Field(examples=["api"])
    spec: str = Field(examples=["<3"])
    reason: str = Field(examples=["3.0 breaks the billing export"])
    author: str = Field(examples=["alice"])
    created_at: datetime
    expires_at: datetime | None = None


class PinCreate(Body):
    scope: str = Field(max_length=80, examples=["channel:stable"])
    component: str = Field(max_length=63, examples=["api"])
    spec: str = Field(max_length=200, examples=["<3"])
    reason: Reason = Field(examples=["3.0 breaks the billing export"])
    expires_at: Instant | None = Field(default=None, examples=["2027-01-31T00:00:00Z"])


# --- advisories ----------------------------------------------------------------


class AdvisoryPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["FLEET-2026-0001"])
    component: str = Field(examples=["api"])
    severity: SeverityName = Field(examples=["high"])
    published_at: datetime
    aliases: list[str] = Field(default_factory=list, examples=[["CVE-2026-1234"]])
    summary: str | None = None
    ranges: list[dict[str, Any]] = Field(default_factory=list)
    versions: list[str] = Field(default_factory=list)


class OsvImport(Body):
    records: dict[str, Any] | list[dict[str, Any]] = Field(
        description="One OSV record, a list of them, or an OSV API answer.",
        examples=[
            {
                "id": "GHSA-xxxx-xxxx-xxxx",
                "published": "2026-11-01T00:00:00Z",
                "affected": [
                    {
                        "package": {"name": "acme-api"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": "2.4.1"}],
                            }
                        ],
                    }
                ],
            }
        ],
    )
    component_map: dict[str, str] = Field(
        description="OSV package name -> component.", examples=[{"acme-api": "api"}]
    )
    default_severity: SeverityName | None = Field(
        default=None, description="For records that carry no severity."
    )


class ImportPublic(BaseModel):
    created: list[str] = Field(examples=[["GHSA-xxxx-xxxx-xxxx (api)"]])
    updated: list[str]
    unchanged: list[str]


class RiskAcceptanceCreate(Body):
    instance: str = Field(max_length=63, examples=["acme-prod"])
    reason: Reason = Field(examples=["mitigated by WAF rule 7; upgrade in Q1"])
    until: Instant = Field(examples=["2027-01-31T00:00:00Z"])


class RiskAcceptancePublic(BaseModel):
    instance: str = Field(examples=["acme-prod"])
    advisory: str = Field(examples=["FLEET-2026-0001"])
    by: str = Field(examples=["carol"])
    reason: str
    until: datetime


# --- plans -----------------------------------------------------------------------


class ComponentChangePublic(BaseModel):
    from_: str | None = Field(alias="from", examples=["2.4.0"])
    to: str | None = Field(examples=["2.5.0"])
    reason: str = Field(examples=["newest on stable that meets global pin <3"])


class RiskAcceptedPublic(BaseModel):
    by: str
    reason: str
    until: datetime


class AdvisoryFlagPublic(BaseModel):
    id: str
    component: str = Field(description="An advisory is identified by its id and component.")
    severity: SeverityName
    deadline: datetime | None
    overdue: bool = Field(description="The deadline has passed.")
    enforced: bool = Field(description="Critical or overdue, and not risk-accepted.")
    running: bool = Field(description="It affects what runs now (else only the planned version).")
    fixed_by_plan: bool = Field(description="The plan deploys a version free of it.")
    would_fix: bool = Field(description="The planned version is free of it, deployed or not.")
    no_fix: bool = Field(description="Enforced, and no version qualifies as its fix yet.")
    risk_accepted: RiskAcceptedPublic | None = None


class OverridePublic(BaseModel):
    advisory: str
    component: str
    version: str
    rule: str
    pin: dict[str, str] | None = None


class InstancePlanPublic(BaseModel):
    instance: str = Field(examples=["acme-prod"])
    channel: str = Field(examples=["stable"])
    policy: PolicyName
    decision: Literal[
        "noop", "deploy", "needs-approval", "skip-frozen", "enforce-security", "error"
    ]
    approvals_required: int
    components: dict[str, ComponentChangePublic]
    advisories: list[AdvisoryFlagPublic]
    pin_overrides: list[OverridePublic]
    overrides: list[OverridePublic]
    warnings: list[str]
    errors: list[str]


class PlanPublic(BaseModel):
    """The plan, exactly as `fleet plan --json` prints it."""

    at: datetime
    instances: list[InstancePlanPublic]


# --- runs: rollouts, rollbacks, approvals -----------------------------------------


class SelectorBody(Body):
    instances: list[str] = Field(default_factory=list, max_length=10_000, examples=[["acme-prod"]])
    channels: list[str] = Field(default_factory=list, max_length=1000, examples=[["stable"]])
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"region": "eu"}])


class StrategyBody(Body):
    canary: AmountText | None = Field(default=None, examples=["1"])
    batch: AmountText | None = Field(default=None, examples=["25%"])
    soak_seconds: float | None = Field(default=None, ge=0, le=86_400)
    halt_after: AmountText | None = Field(default=None, examples=["0"])


class RolloutCreate(Body):
    selector: SelectorBody = Field(default_factory=SelectorBody)
    dry_run: bool = False
    strategy: StrategyBody = Field(default_factory=StrategyBody)
    at: Instant | None = Field(default=None, description="Plan as of this time (default: now).")


class RiskAcceptanceBody(Body):
    reason: Reason = Field(examples=["r6 is the only build the customer certified"])
    until: Instant = Field(examples=["2027-01-31T00:00:00Z"])


class RollbackCreate(Body):
    instances: list[str] = Field(min_length=1, max_length=1000, examples=[["acme-prod"]])
    target: str = Field(
        default="previous",
        max_length=64,
        description="previous, a revision (r7) or an ISO time.",
        examples=["previous"],
    )
    reason: Reason = Field(examples=["2.5.0 breaks SSO for acme"])
    risk_acceptance: RiskAcceptanceBody | None = Field(
        default=None, description="Needed to restore a version an enforced advisory affects."
    )


class RunPublic(BaseModel):
    flow_run_id: str = Field(examples=["0f8b1c7e-3d2a-4c55-9d43-6f7a2b1e9c10"])
    flow: str = Field(examples=["compile-and-deploy"])
    name: str = Field(examples=["compile-and-deploy by alice"])
    deployment: str | None = Field(default=None, examples=["compile-and-deploy/fleet"])
    requested_by: str | None = Field(default=None, examples=["alice"])
    state: str | None = Field(examples=["Paused"])
    state_type: str | None = Field(examples=["PAUSED"])
    created: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class ApprovalPublic(BaseModel):
    instance: str
    approver: str
    decision: Literal["approve", "reject", "waived"]
    comment: str
    at: datetime
    verified: bool = Field(
        description="True: a credential Fleet checked (an API token, a one-time approval "
        "code); false: a name typed into a form."
    )
    flow_run_id: str | None
    revision: int | None
    manifest_hash: str | None = Field(
        default=None, description="The hash of the revision the approver was shown."
    )


class WaitingInstance(BaseModel):
    instance: str = Field(examples=["acme-prod"])
    revision: int = Field(examples=[7])
    hash: str = Field(description="The revision's content hash: what an approval is bound to.")
    decision: str | None = Field(examples=["needs-approval"])
    status: str = Field(examples=["compiled"])
    changes: dict[str, dict[str, str | None]] = Field(
        examples=[{"api": {"from": "2.4.0", "to": "2.5.0"}}]
    )
    explanation: dict[str, str]
    warnings: list[str]


class WaitingRun(RunPublic):
    pause_key: str | None = Field(default=None, examples=["approval-1"])
    description: str | None = Field(default=None, description="The approval form's Markdown.")
    plan: list[WaitingInstance]
    approvals: list[ApprovalPublic]


class DecisionBody(Body):
    decision: Literal["approve", "reject"] = "approve"
    comment: Reason = Field(default="", examples=["checked the release notes"])
    instances: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="Instances decided; empty: every instance the run waits for.",
    )


class ApprovalCodePublic(BaseModel):
    code: str = Field(examples=["K7QMZ-R2D4X-9HVTP-WNB3C"])
    flow_run_id: str
    principal: str = Field(examples=["bob"], description="Whom the code approves as.")
    expires_at: datetime = Field(description="15 minutes after it was issued; usable once.")


class DecisionPublic(BaseModel):
    flow_run_id: str
    approver: str = Field(examples=["bob"])
    decision: Literal["approve", "reject"]
    instances: list[str]
    verified: bool = True
    approvals: list[ApprovalPublic]


# --- history, audit, compliance, tokens ------------------------------------------


class RevisionPublic(BaseModel):
    revision: int = Field(examples=[7])
    status: str = Field(examples=["deployed"])
    hash: str
    parent: int | None
    rollback_of: int | None
    decision: str | None
    created_at: datetime
    created_by: str
    status_at: datetime
    deployed_at: datetime | None
    flow_run_id: str | None
    manifest: dict[str, str] = Field(examples=[{"api": "2.5.0", "web": "2.5.0"}])
    changes: dict[str, dict[str, str | None]]
    explanation: dict[str, str]
    warnings: list[str]


class DeploymentPublic(BaseModel):
    instance: str
    revision: int
    flow_run_id: str
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str = Field(examples=["succeeded"])
    error: str | None
    approvals: list[ApprovalPublic]


class AuditEventPublic(BaseModel):
    seq: int = Field(examples=[42])
    at: datetime
    actor: str = Field(examples=["alice"])
    action: str = Field(examples=["pin.create"])
    subject: str = Field(examples=["pin:global/api<3"])
    details: dict[str, Any]
    flow_run_id: str | None
    prev_hash: str
    hash: str


class VerdictPublic(BaseModel):
    ok: bool
    checked: int = Field(examples=[1234])
    broken_seq: int | None = None
    reason: str | None = None


class ReportRevisionPublic(BaseModel):
    number: int = Field(examples=[7])
    hash: str
    components: dict[str, str] = Field(examples=[{"api": "2.4.3", "web": "2.4.1"}])
    status: str = Field(examples=["deployed"])
    decision: str | None = Field(examples=["needs-approval"])
    created_at: datetime
    created_by: str = Field(examples=["scheduler"])
    deployed_at: datetime | None
    parent: int | None
    rollback_of: int | None


class ReportRunPublic(BaseModel):
    role: Literal["planned", "deployed"]
    flow_run_id: str
    link: str | None = Field(description="The run in the Prefect UI, when its address is known.")
    started_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None = Field(examples=["succeeded"])


class ReportApprovalPublic(BaseModel):
    approver: str = Field(examples=["carol"])
    decision: Literal["approve", "reject", "waived"]
    identity: Literal["verified", "self-declared"]
    verified: bool
    at: datetime
    comment: str
    flow_run_id: str | None
    shown_revision: int | None = Field(description="The revision the approver was shown.")
    shown_hash: str | None = Field(description="Its content hash, as shown.")


class ReportAcceptancePublic(BaseModel):
    by: str = Field(examples=["ciso"])
    reason: str
    until: datetime


class ReportAdvisoryPublic(BaseModel):
    advisory: str = Field(examples=["FLEET-2026-0007"])
    component: str = Field(examples=["api"])
    version: str = Field(examples=["2.4.2"])
    severity: SeverityName
    published_at: datetime
    deadline: datetime | None
    overdue: bool
    enforced: bool
    open: bool = Field(description="Not risk-accepted at the report's time.")
    fixed_in: list[str]
    risk_acceptance: ReportAcceptancePublic | None


class ReportEventPublic(BaseModel):
    seq: int = Field(examples=[42])
    at: datetime
    actor: str = Field(examples=["carol"])
    action: str = Field(examples=["approval.approve"])
    subject: str = Field(examples=["instance:acme-prod"])
    flow_run_id: str | None
    hash: str


class AuditReportPublic(BaseModel):
    """What ran on an instance at a time, who approved it, what was open against it."""

    instance: str = Field(examples=["acme-prod"])
    at: datetime
    revision: ReportRevisionPublic | None = Field(description="Null: nothing was running.")
    planned_by: ReportRunPublic | None
    deployed_by: ReportRunPublic | None
    approvals_required: int | None
    approvals: list[ReportApprovalPublic]
    advisories: list[ReportAdvisoryPublic]
    events: list[ReportEventPublic]
    chain: VerdictPublic | None = Field(description="The chain verified up to these events.")


class WitnessCheckPublic(BaseModel):
    status: Literal["ok", "truncated", "forked"]
    seq: int = Field(examples=[1234])
    hash: str
    published_at: datetime
    where: str = Field(examples=["file /var/lib/fleet-witness/heads.jsonl line 12"])
    flow_run_id: str | None
    message: str


class WitnessReportPublic(BaseModel):
    ok: bool
    verdict: VerdictPublic
    checks: list[WitnessCheckPublic]
    notes: list[str] = Field(description="Witnesses that could not be read, and why.")


class ComplianceItem(BaseModel):
    instance: str = Field(examples=["acme-prod"])
    channel: str = Field(examples=["stable"])
    advisory: str = Field(examples=["FLEET-2026-0001"])
    component: str = Field(examples=["api"])
    severity: SeverityName
    deadline: datetime | None
    overdue: bool = Field(description="The deadline has passed.")
    enforced: bool
    status: Literal["risk-accepted", "no-fix", "overdue", "enforced", "report-only", "due"]
    no_fix: bool = Field(description="Enforced, and no version qualifies as its fix yet.")
    fixed_by_plan: bool
    running: str | None = Field(description="The affected version the instance runs.")
    risk_accepted: RiskAcceptedPublic | None = None


class TokenPublic(BaseModel):
    name: str = Field(examples=["alice"])
    role: RoleName
    created_at: datetime
    revoked_at: datetime | None = None


class TokenCreate(Body):
    name: str = Field(max_length=100, examples=["ci-pipeline"])
    role: RoleName = Field(examples=["operator"])


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret: shown only now, stored only as a hash.")
