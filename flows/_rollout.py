"""The parts every rollout flow shares: what to select, how to roll out, the
approval gate and the wave rollout.

Approvals: while approvals are missing the run waits for a `RunInput` form
(Resume in the Prefect UI, `resume_flow_run`, or Fleet's API). Run from a
deployment, it *suspends*: the process exits and no worker slot is held for
the days an approval may take; on resume Prefect starts it again from the
top, and cached plans, Fleet's records (one deployment record per instance
and run, approvals recorded once) and Prefect's stored inputs make that
replay land exactly where the run stopped. Run without a deployment (tests,
a plain call), it *pauses* in process.
"""

import math
import time
from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from queue import Queue
from typing import Literal

from prefect import Task, get_run_logger, tags
from prefect.context import TagsContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, Field

from blocks.targets import TargetBlock
from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError, InputError, PermissionDenied
from fleet.core.manifests import ManifestStatus
from fleet.core.rollout import (
    Amount,
    ApprovalTally,
    ApprovalVerdict,
    RolloutStrategy,
    halted,
    waves,
)
from fleet.services import approvals, manifests
from fleet.services.rollouts import DeploySpec
from fleet.settings import get_settings
from tasks._tagcheck import TagChecks
from tasks.deploying import (
    InstanceOutcome,
    deploy_instance,
    load_targets,
    locked,
    record_outcome,
)
from tasks.reporting import Progress

__all__ = [
    "DEPLOY_CONCURRENCY",
    "ApprovalInput",
    "Selector",
    "Strategy",
    "approval_gate",
    "rollout",
]


# A finished deploy handed to the rollout loop, with its outcome if it completed.
Finished = tuple[PrefectFuture[InstanceOutcome], InstanceOutcome | None]

# Deploys a rollout runs at once: the rollout flows' task runners have as many threads.
DEPLOY_CONCURRENCY = 16


class Selector(BaseModel):
    """Which instances to plan; empty lists select the whole fleet."""

    instances: list[str] = Field(default_factory=list, description="Instance names.")
    channels: list[str] = Field(default_factory=list, description="Channel names.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels every selected instance has, e.g. region: eu."
    )


class Strategy(BaseModel):
    """How the rollout proceeds: canary first, then batches, halting on failures."""

    canary: str = Field(default="1", description="Canary wave: a count (1) or a percent (5%).")
    batch: str = Field(default="25%", description="Batch size: a count (10) or a percent (25%).")
    soak_seconds: float = Field(default=0, ge=0, description="Pause between waves, in seconds.")
    halt_after: str = Field(
        default="0",
        description="Halt when failures exceed this count (0: the first failure) or percent.",
    )
    retries: int = Field(default=4, ge=0, le=20, description="Retries of transient errors.")
    retry_delay_seconds: float = Field(
        default=0.5, ge=0, description="First retry delay; it doubles each time (with jitter)."
    )
    lock_timeout_seconds: float = Field(
        default=600, gt=0, description="How long to wait for another run holding an instance."
    )
    approval_poll_seconds: int = Field(
        default=5, ge=1, description="How often a paused run looks for its approval."
    )

    def rules(self) -> RolloutStrategy:
        return RolloutStrategy(
            Amount.parse(self.canary), Amount.parse(self.batch), Amount.parse(self.halt_after)
        )


class ApprovalInput(RunInput):
    """An approval or rejection of the waiting instances (or some of them)."""

    decision: Literal["approve", "reject"] = "approve"
    approver: str = Field(default="", description="Who decides (not the requester).")
    comment: str = Field(default="", description="Why.")
    instances: list[str] = Field(
        default_factory=list, description="Instances decided; empty: every waiting instance."
    )


def _approval_text(
    specs: dict[str, DeploySpec],
    tally: ApprovalTally,
    deadlines: dict[str, datetime],
    notes: Mapping[str, str],
    console: str | None = None,
) -> str:
    lines = ["# Approval needed", ""]
    lines.append(f"Requested by **{tally.requested_by}** (who cannot approve it).")
    lines.append("")
    if console:
        lines.append(
            f"Approve or reject as yourself in [Fleet's console]({console}): the approval is "
            "recorded as verified. A name typed into this form is recorded as self-declared."
        )
        lines.append("")
    for name in tally.pending():
        spec = specs[name]
        given = ", ".join(sorted(tally.approvers.get(name, ()))) or "none yet"
        lines.append(
            f"## {name} r{spec.revision} ({spec.channel}): "
            f"{tally.missing(name)} more approval(s), deadline {isoformat(deadlines[name])}"
        )
        lines.append(f"Approved so far by: {given}")
        lines.append("")
        if notes.get(name):
            lines.append(notes[name])
            lines.append("")
        for component, old, new, reason in spec.changes:
            lines.append(f"- `{component}` {old or '(none)'} -> {new or '(none)'}: {reason}")
        lines.append("")
    return "\n".join(lines)


def _wait_for_input(description: str, key: str, timeout: int, poll: int) -> ApprovalInput:
    form = ApprovalInput.with_initial_data(description=description, decision="approve")
    if deployment.id:
        return suspend_flow_run(wait_for_input=form, key=key, timeout=timeout)
    return pause_flow_run(wait_for_input=form, key=key, timeout=timeout, poll_interval=poll)


def approval_gate(
    waiting: list[DeploySpec],
    *,
    requested_by: str,
    opened_at: datetime,
    poll: int,
    notes: Mapping[str, str] | None = None,
) -> tuple[list[DeploySpec], list[tuple[DeploySpec, str, str]]]:
    """Wait until every waiting instance is approved, rejected or expired.

    `notes` adds a Markdown paragraph per instance to the form (e.g. an
    advisory's deadline). Returns the approved specs, and (spec, outcome,
    why) for the others.
    """
    notes = notes or {}
    logger = get_run_logger()
    run_id = str(flow_run.id)
    specs = {s.instance: s for s in waiting}
    tally = ApprovalTally(requested_by, {s.instance: s.approvals_required for s in waiting})
    deadlines = {
        s.instance: datetime.fromtimestamp(opened_at.timestamp() + s.approval_timeout_seconds, UTC)
        for s in waiting
    }
    closed: list[tuple[DeploySpec, str, str]] = []
    expired: set[str] = set()
    console = get_settings().console_link(f"/console/approvals/{run_id}")
    key = 0
    while True:
        now = datetime.now(UTC)
        for name in tally.pending():
            if name not in expired and deadlines[name] <= now:
                expired.add(name)
                closed.append(
                    (specs[name], "expired", f"no approval by {isoformat(deadlines[name])}")
                )
        pending = [n for n in tally.pending() if n not in expired]
        if not pending:
            break
        key += 1
        remaining = min(deadlines[n] for n in pending) - now
        timeout = max(1, math.ceil(remaining.total_seconds()))
        try:
            answer = _wait_for_input(
                _approval_text(specs, tally, deadlines, notes, console),
                f"approval-{key}",
                timeout,
                poll,
            )
        except FlowPauseTimeout:
            continue  # the deadline check at the top expires what is due
        approver = answer.approver.strip()
        approve = answer.decision == "approve"
        refusal = tally.refusal(approver, approve)
        chosen = answer.instances or pending
        if refusal is None:
            unknown = [n for n in chosen if n not in pending]
            if unknown:
                refusal = f"not waiting for approval in this run: {', '.join(unknown)}"
        if refusal is not None:
            logger.warning("approval input refused: %s", refusal)
            approvals.record_refusal(
                chosen,
                approver=approver or "(empty)",
                reason=refusal,
                key=f"approval-{key}",
                flow_run_id=run_id,
            )
            continue
        try:
            for name in chosen:
                approvals.record_once(
                    name,
                    approver=approver,
                    decision=answer.decision,
                    comment=answer.comment,
                    flow_run_id=run_id,
                    manifest_number=specs[name].revision,
                )
        except (PermissionDenied, InputError) as exc:
            approvals.record_refusal(
                chosen,
                approver=approver,
                reason=str(exc),
                key=f"approval-{key}",
                flow_run_id=run_id,
            )
            continue
        tally.add(approver, approve, chosen)
        logger.info("%s by %s for %s", answer.decision, approver, ", ".join(chosen))
        for name in chosen:
            verdict = tally.verdict(name)
            if verdict is ApprovalVerdict.APPROVED:
                with suppress(ConflictError):  # marked before this run resumed
                    manifests.mark_manifest(
                        name,
                        specs[name].revision,
                        ManifestStatus.APPROVED,
                        actor=approver,
                        flow_run_id=run_id,
                    )
            elif verdict is ApprovalVerdict.REJECTED:
                why = f"rejected by {approver}" + (f": {answer.comment}" if answer.comment else "")
                closed.append((specs[name], "skipped", why))
    approved = [specs[n] for n in specs if tally.verdict(n) is ApprovalVerdict.APPROVED]
    return approved, closed


def rollout(
    specs: list[DeploySpec],
    strategy: Strategy,
    *,
    actor: str,
    progress: Progress,
    done: list[InstanceOutcome],
) -> bool:
    """Deploy `specs` in waves; returns True when the halt threshold stopped it."""
    logger = get_run_logger()
    rules = strategy.rules()
    by_name = {s.instance: s for s in specs}
    deploy = deploy_instance.with_options(
        retries=strategy.retries,
        retry_delay_seconds=[strategy.retry_delay_seconds * 2**i for i in range(strategy.retries)],
    )
    blocks = load_targets(sorted({s.target for s in specs if s.target})) if specs else {}
    failed = started = 0
    plan = waves([s.instance for s in specs], rules)
    for number, wave in enumerate(plan):
        if number and strategy.soak_seconds:
            logger.info("soaking %s s before wave %s", strategy.soak_seconds, number + 1)
            time.sleep(strategy.soak_seconds)
        with locked(wave, timeout=strategy.lock_timeout_seconds), TagChecks() as checks:
            waiting = [by_name[name] for name in reversed(wave)]
            running: dict[PrefectFuture[InstanceOutcome], DeploySpec] = {}
            finished: Queue[Finished] = Queue()
            while waiting or running:
                # Twice as many deploys as the task runner runs at once, the next
                # one submitted as one ends: the runner never waits for this loop,
                # and each deploy starts soon after its submission, while its tag
                # check (cleared just before) is still cached.
                while waiting and len(running) < 2 * DEPLOY_CONCURRENCY:
                    spec = waiting.pop()
                    future = _submit(deploy, spec, blocks, checks, actor=actor)
                    running[future] = spec
                    future.add_done_callback(partial(_settle, into=finished))
                future, outcome = finished.get()
                spec = running.pop(future)
                if outcome is None:
                    outcome = _outcome(spec, future, actor=actor)
                done.append(outcome)
                started += 1
                if outcome.outcome != "succeeded":
                    failed += 1
                progress.advance()
        if halted(failed, started, rules):
            rest = [by_name[n] for later in plan[number + 1 :] for n in later]
            logger.error("halting: %s of %s failed; %s not started", failed, started, len(rest))
            for spec in rest:
                record_outcome(spec, "halted", actor=actor, error="rollout halted")
                done.append(InstanceOutcome(spec.instance, spec.revision, "halted"))
            progress.advance(len(rest))
            return True
    return False


def _submit(
    deploy: Task[..., InstanceOutcome],
    spec: DeploySpec,
    blocks: Mapping[str, TargetBlock],
    checks: TagChecks,
    *,
    actor: str,
) -> PrefectFuture[InstanceOutcome]:
    """Submit `spec`'s deploy task, its run tagged with instance, channel, revision, release."""
    release = [f"release:{c}-{new}" for c, _, new, _ in spec.changes if new]
    with tags(
        f"instance:{spec.instance}",
        f"channel:{spec.channel}",
        f"revision:{spec.revision}",
        *release,
    ):
        checks.clear(TagsContext.get().current_tags | set(deploy.tags))
        target = blocks.get(spec.target) if spec.target else None
        future: PrefectFuture[InstanceOutcome] = deploy.submit(spec, target, actor=actor)
        return future


def _settle(
    future: PrefectFuture[InstanceOutcome],
    *,
    into: Queue[Finished],
) -> None:
    """Hand a finished deploy to the rollout loop, with its outcome if it completed.

    Runs in the thread that ran the deploy: reading a result from its state
    takes a hop through Prefect's event-loop thread (about 30 ms under a
    rollout's load), which would otherwise hold up the loop submitting the
    next deploys. Whatever goes wrong here, the loop gets the future and
    `_outcome` reads it again.
    """
    outcome = None
    try:
        future.wait()  # done: this only sets the future's final state
        if future.state.is_completed():
            outcome = future.result()
    except Exception:  # `_outcome` reads it again, in the loop
        pass
    finally:  # even on a signal such as a suspension: the loop must never wait forever
        into.put((future, outcome))


def _outcome(
    spec: DeploySpec, future: PrefectFuture[InstanceOutcome], *, actor: str
) -> InstanceOutcome:
    """A finished deploy task's outcome; a task that gave up is recorded `failed`."""
    future.wait()  # done: this only sets the future's final state (else read from the server)
    if future.state.is_completed():
        return future.result()
    error = str(future.state.message or "deploy failed")
    try:
        future.result(raise_on_failure=True)
    except Exception as exc:  # the task's own error, after its retries
        error = f"{type(exc).__name__}: {exc}"
    record_outcome(spec, "failed", actor=actor, error=error)
    return InstanceOutcome(spec.instance, spec.revision, "failed", error)


def deploy_then_ask(
    now: list[DeploySpec],
    waiting: list[DeploySpec],
    strategy: Strategy,
    *,
    requested_by: str,
    opened_at: datetime,
    notes: Mapping[str, str] | None = None,
) -> list[InstanceOutcome]:
    """The runbook's middle: deploy what needs no approval, then ask for the rest
    and deploy what is approved. A halted rollout asks for nothing more."""
    done: list[InstanceOutcome] = []
    total = len(now) + len(waiting)
    progress = Progress(total)
    stopped = rollout(now, strategy, actor=requested_by, progress=progress, done=done)
    if waiting and stopped:
        for spec in waiting:
            record_outcome(spec, "halted", actor=requested_by, error="rollout halted")
            done.append(InstanceOutcome(spec.instance, spec.revision, "halted"))
        progress.advance(len(waiting))
    elif waiting:
        approved, closed = approval_gate(
            waiting,
            requested_by=requested_by,
            opened_at=opened_at,
            poll=strategy.approval_poll_seconds,
            notes=notes,
        )
        record_closed(closed, actor=requested_by, progress=progress, done=done)
        rollout(approved, strategy, actor=requested_by, progress=progress, done=done)
    return done


def record_closed(
    closed: list[tuple[DeploySpec, str, str]],
    *,
    actor: str,
    progress: Progress,
    done: list[InstanceOutcome],
) -> None:
    """Record the instances the approval gate closed (rejected, expired) as done."""
    for spec, outcome, why in closed:
        record_outcome(spec, outcome, actor=actor, error=why)
        done.append(InstanceOutcome(spec.instance, spec.revision, outcome, why))
    progress.advance(len(closed))
