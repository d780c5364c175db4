"""The parts every rollout flow shares: what to select, how to roll out, the
approval gate and the wave rollout.

Approvals: while approvals are missing the run waits for a `RunInput` form
(Resume in the Prefect UI, `resume_flow_run`, or Fleet's API). Run from a
deployment, it *suspends*: the process exits and no worker slot is held for
the days an approval may take; on resume Prefect starts it again from the
top, and cached plans, Fleet's records (what the run waits for, one
deployment record per instance and run, decisions recorded once, codes spent
once per form) and Prefect's stored inputs make that replay land exactly
where the run stopped. Run without a deployment (tests, a plain call), it
*pauses* in process. Each instance deploys as soon as its own approvals are
complete, while the run waits for the others.
"""

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from queue import Queue
from typing import Annotated, Any, Literal, TypeVar, cast

from prefect import Task, get_run_logger, tags
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.futures import PrefectFuture, PrefectWrappedFuture
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from prefect.utilities.annotations import quote
from pydantic import AfterValidator, BaseModel, Field

from blocks.targets import TargetBlock
from fleet.core.approvals import ApprovalTally, Request, Verdict, refusal
from fleet.core.durations import isoformat
from fleet.core.errors import ConflictError, FleetError, InputError, PermissionDenied
from fleet.core.identity import MAX_IDENTITY_LENGTH
from fleet.core.manifests import ManifestStatus
from fleet.core.rollout import Amount, RolloutStrategy, halted, waves
from fleet.services import approvals, codes, manifests, rollouts
from fleet.services.codes import CodeRefused
from fleet.services.rollouts import DeploySpec
from fleet.settings import get_settings
from tasks.deploying import (
    InstanceOutcome,
    Watch,
    chunk_label,
    deploy_instances,
    load_targets,
    record_outcome,
    watch,
)
from tasks.reporting import Progress

__all__ = [
    "DEPLOY_CONCURRENCY",
    "ApprovalInput",
    "Rollout",
    "Selector",
    "Strategy",
    "approval_gate",
    "deploy_then_ask",
    "quoted",
    "record_closed",
    "rollout",
]


T = TypeVar("T")

# A finished deploy task handed to the rollout loop, with its outcomes if it completed
# (each counted against the halt threshold already, as it ended).
Chunk = list[DeploySpec]
Finished = tuple[PrefectFuture[list[InstanceOutcome]], list[InstanceOutcome] | None]

# Deploy tasks a rollout runs at once: the rollout flows' task runners have as many threads.
DEPLOY_CONCURRENCY = 16
# The most instances one deploy task run deploys, one after another.
MAX_CHUNK = 50


def chunk_size(wave: int) -> int:
    """Instances per deploy task run in a wave of `wave` instances.

    One each while the wave is small (a run of 20 instances shows 20 deploy
    task runs); a big wave's task runs carry up to `MAX_CHUNK` instances each,
    so that Prefect's cost per task run (about 40 ms of CPU, measured in
    `bench/scale.py`) is paid once per chunk, while leaving at least as many
    chunks as threads to keep every thread busy.

    >>> [chunk_size(n) for n in (1, 31, 32, 100, 200, 2000)]
    [1, 1, 2, 6, 12, 50]
    """
    return max(1, min(MAX_CHUNK, wave // DEPLOY_CONCURRENCY))


class Selector(BaseModel):
    """Which instances to plan; empty lists select the whole fleet."""

    instances: list[str] = Field(default_factory=list, description="Instance names.")
    channels: list[str] = Field(default_factory=list, description="Channel names.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels every selected instance has, e.g. region: eu."
    )


def _amount(value: str) -> str:
    """The core's rule for a count or percent, checked when the run's parameters are."""
    try:
        Amount.parse(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    return value


AmountText = Annotated[str, AfterValidator(_amount)]


class Strategy(BaseModel):
    """How the rollout proceeds: canary first, then batches, halting on failures."""

    canary: AmountText = Field(
        default="1", description="Canary wave: a count (1) or a percent (5%)."
    )
    batch: AmountText = Field(
        default="25%", description="Batch size: a count (10) or a percent (25%)."
    )
    soak_seconds: float = Field(
        default=0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description="Pause between waves, in seconds.",
    )
    halt_after: AmountText = Field(
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
    """An approval or rejection of the waiting instances (or some of them).

    The limits are checked by Prefect's server against this schema before the
    run sees the input (the form shows what is wrong).
    """

    decision: Literal["approve", "reject"] = "approve"
    approver: str = Field(
        default="",
        max_length=MAX_IDENTITY_LENGTH,
        description="Who decides (not the requester); self-declared. Ignored with a code.",
    )
    code: str = Field(
        default="",
        max_length=64,
        description="Optional one-time approval code (`fleet approvals code RUN_ID`): "
        "decides as the code's holder, verified.",
    )
    comment: str = Field(default="", max_length=4096, description="Why (at most 4 KB).")
    instances: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list,
        max_length=10_000,
        description="Instances decided; empty: every waiting instance.",
    )


def _approval_text(
    specs: Mapping[str, DeploySpec],
    pending: Sequence[str],
    tally: ApprovalTally,
    deadlines: Mapping[str, datetime],
    notes: Mapping[str, str],
    run_id: str,
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
    verified_only = [n for n in pending if specs[n].verified_approvals]
    if verified_only:
        lines.append(
            f"**Only verified approvals count for {', '.join(verified_only)}**: a name typed "
            "into Approver is recorded there but does not count."
        )
        lines.append("")
    lines.append(
        "A name typed into **Approver** is self-declared. To decide as a verified "
        f"principal, get a one-time code (`fleet approvals code {run_id}`, or "
        f"`POST /approvals/{run_id}/code` with your API token) and paste it into **Code**: "
        "the decision is then taken as the code's holder, and the typed name is ignored."
    )
    lines.append("")
    for name in pending:
        spec = specs[name]
        given = ", ".join(tally.approvers(name)) or "none yet"
        lines.append(
            f"## {name} r{spec.revision} ({spec.channel}): "
            f"{tally.missing(name)} more approval(s), deadline {isoformat(deadlines[name])}"
        )
        lines.append(f"Revision {spec.revision}, manifest hash `{spec.manifest_hash}`.")
        lines.append("")
        if spec.verified_approvals:
            lines.append(
                f"**Channel {spec.channel} counts verified approvals only**: a typed name is "
                "recorded but does not count. Use a one-time code or Fleet's API."
            )
            lines.append("")
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


def _take(
    answer: ApprovalInput,
    *,
    key: str,
    specs: Mapping[str, DeploySpec],
    pending: Sequence[str],
    requested_by: str,
    run_id: str,
) -> None:
    """Record one form input: a decision, or why it was refused (four eyes, a name that
    is no name, a spent or foreign code, an instance that does not wait)."""
    logger = get_run_logger()
    chosen = list(dict.fromkeys(answer.instances)) or list(pending)
    typed = answer.approver

    def refuse(why: str, *, who: str, **details: Any) -> None:
        logger.warning("approval input refused: %s", why)
        approvals.record_refusal(
            # Recorded on the run's own instances: a name typed into the form is
            # no subject of the audit chain.
            [n for n in chosen if n in specs] or list(pending),
            approver=who or "(empty)",
            reason=why,
            key=key,
            flow_run_id=run_id,
            details=details,
        )

    unknown = [n for n in chosen if n not in pending]
    if unknown:
        named = ", ".join(repr(n) for n in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        refuse(f"not waiting for approval in this run: {named}", who=typed)
        return
    if answer.code.strip():
        try:
            approver = codes.redeem_code(answer.code, flow_run_id=run_id, key=key)
        except CodeRefused as exc:
            refuse(exc.reason, who=exc.principal or typed, via="code", typed=typed)
            return
        verified, via = True, "code"
    else:
        approver, verified, via = typed, False, "form"
    approve = answer.decision == "approve"
    why = refusal(approver, requested_by=requested_by, approve=approve)
    if why is not None:
        refuse(why, who=approver, via=via)
        return
    try:
        for name in chosen:
            approvals.record(
                name,
                approver=approver,
                decision=answer.decision,
                comment=answer.comment,
                verified=verified,
                flow_run_id=run_id,
                manifest_number=specs[name].revision,
                manifest_hash=specs[name].manifest_hash,
                via=via,
            )
    except (PermissionDenied, InputError) as exc:
        refuse(str(exc), who=approver, via=via)
        return
    tally = approvals.tally(run_id)
    assert tally is not None
    logger.info(
        "%s by %s (%s) for %s; %s",
        answer.decision,
        approver,
        via,
        ", ".join(chosen),
        "; ".join(
            f"{n}: {tally.verdict(n)}, approved by {', '.join(tally.approvers(n)) or 'nobody'}"
            + (f", {tally.missing(n)} more needed" if tally.missing(n) else "")
            for n in chosen
        ),
    )
    unverified = [n for n in chosen if specs[n].verified_approvals and not verified]
    if unverified:
        logger.warning(
            "%s's self-declared %s is recorded but does not count for %s: their channels "
            "count verified approvals only",
            approver,
            answer.decision,
            ", ".join(unverified),
        )


def approval_gate(
    waiting: list[DeploySpec],
    *,
    requested_by: str,
    opened_at: datetime,
    poll: int,
    deploy: Callable[[list[DeploySpec]], bool],
    notes: Mapping[str, str] | None = None,
) -> list[tuple[DeploySpec, str, str]]:
    """Ask for approval of `waiting`, and deploy each instance as soon as its own
    approvals are complete (`deploy` returns True once the rollout has halted).

    What the run waits for is recorded first (Fleet's approval requests: the
    revision and hash each form shows); decisions are counted from Fleet's
    records, so a verified approval the API recorded counts as one typed into
    the form, and a run that re-executes from the top after a suspension
    finds every decision where it left it. `notes` adds a Markdown paragraph
    per instance to the form (e.g. an advisory's deadline). Returns (spec,
    outcome, why) for the instances it did not deploy: rejected (`skipped`),
    `expired`, or `halted` after a failed deploy.
    """
    notes = notes or {}
    run_id = str(flow_run.id)
    specs = {s.instance: s for s in waiting}
    opened = approvals.open_requests(
        [
            Request(
                s.instance, s.revision, s.manifest_hash, s.approvals_required, s.verified_approvals
            )
            for s in waiting
        ],
        requested_by=requested_by,
        deadlines={
            s.instance: datetime.fromtimestamp(
                opened_at.timestamp() + s.approval_timeout_seconds, UTC
            )
            for s in waiting
        },
        flow_run_id=run_id,
    )
    deadlines = opened.deadlines
    closed: list[tuple[DeploySpec, str, str]] = []
    handled: set[str] = set()
    console = get_settings().console_link(f"/console/approvals/{run_id}")
    key = 0
    while True:
        tally = approvals.tally(run_id)
        assert tally is not None  # the requests were recorded above
        now = datetime.now(UTC)
        for name in specs:
            if name in handled:
                continue
            verdict = tally.verdict(name)
            rejection = tally.rejection(name)
            if rejection is not None:
                why = f"rejected by {rejection.approver}" + (
                    f": {rejection.comment}" if rejection.comment else ""
                )
                closed.append((specs[name], "skipped", why))
                handled.add(name)
            elif verdict is Verdict.PENDING and deadlines[name] <= now:
                closed.append(
                    (specs[name], "expired", f"no approval by {isoformat(deadlines[name])}")
                )
                handled.add(name)
        ready = [n for n in specs if n not in handled and tally.verdict(n) is Verdict.APPROVED]
        if ready:
            handled.update(ready)
            for name in ready:
                with suppress(ConflictError):  # marked before this run resumed
                    manifests.mark_manifest(
                        name,
                        specs[name].revision,
                        ManifestStatus.APPROVED,
                        actor=tally.approvers(name)[-1],  # whose approval completed it
                        flow_run_id=run_id,
                    )
            if deploy([replace(specs[n], approved=True) for n in ready]):
                rest = [n for n in specs if n not in handled]
                closed += [(specs[n], "halted", "rollout halted") for n in rest]
                handled.update(rest)
        pending = [n for n in specs if n not in handled]
        if not pending:
            return closed
        key += 1
        remaining = min(deadlines[n] for n in pending) - datetime.now(UTC)  # after deploys
        timeout = max(1, math.ceil(remaining.total_seconds()))
        try:
            answer = _wait_for_input(
                _approval_text(specs, pending, tally, deadlines, notes, run_id, console),
                f"approval-{key}",
                timeout,
                poll,
            )
        except FlowPauseTimeout:
            continue  # the deadline check at the top expires what is due
        _take(
            answer,
            key=f"approval-{key}",
            specs=specs,
            pending=pending,
            requested_by=requested_by,
            run_id=run_id,
        )


class Rollout:
    """Deploys one run's specs in waves, whenever they are ready (at once, or as
    their approvals complete).

    A wave's instances go to deploy task runs, one instance each or, in a big
    wave, a chunk each (`chunk_size`), `DEPLOY_CONCURRENCY` at once. Failures
    count across every call: once they pass the halt threshold (`halt_after`,
    a count or a percentage of the deploys started), no deploy starts any
    more, within a wave and within a chunk too. Each deploy is counted in the
    thread that ran it, as it ends, before that thread starts another: once
    the threshold is passed, deploy tasks still queued in the task runner are
    cancelled, and a deploy that starts anyway finds the run's halt signal
    and returns `halted` without touching its instance. The instances not
    started are recorded `halted`. Each deploy takes its own instance's lock
    (`tasks.deploying`): a wave never waits for more than its own instances,
    and one held by another run for longer than `lock_timeout_seconds` is
    reported `locked` while the rest go on.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        actor: str,
        progress: Progress,
        done: list[InstanceOutcome],
    ) -> None:
        self.strategy = strategy
        self.rules = strategy.rules()
        self.actor = actor
        self.progress = progress
        self.done = done
        self.failed = 0
        self.started = 0
        # Each deploy counted, as it ended: a deploy task that fails as a whole after
        # some of its deploys ended (its last records refused) is not counted twice.
        self.counted: dict[tuple[str, int], InstanceOutcome] = {}
        self._lock = threading.Lock()
        self._watch: Watch = watch(str(flow_run.id))  # kept: the registry holds it weakly
        self._watch.count = self.count
        self._options = {
            "retries": strategy.retries,
            "retry_delay": strategy.retry_delay_seconds,
            "lock_timeout": strategy.lock_timeout_seconds,
        }

    @property
    def stopped(self) -> bool:
        """Failures have passed the halt threshold: nothing more is started."""
        return self._watch.halt.is_set()

    def count(self, outcome: InstanceOutcome) -> None:
        """Count a deploy that ended; any thread, as it ends."""
        with self._lock:
            self.counted[outcome.instance, outcome.revision] = outcome
            if outcome.outcome == "halted":  # it found the signal: it never started
                self.started -= 1
                return
            if outcome.outcome != "succeeded":
                self.failed += 1
            if halted(self.failed, self.started, self.rules):
                self._watch.halt.set()

    def __call__(self, specs: Sequence[DeploySpec]) -> bool:
        """Deploy `specs`; returns True when the rollout has halted (now or before)."""
        if not specs:
            return self.stopped
        if self.stopped:
            self.halt(list(specs))
            return True
        logger = get_run_logger()
        by_name = {s.instance: s for s in specs}
        blocks = load_targets(quoted(sorted({s.target for s in specs if s.target})))
        plan = waves([s.instance for s in specs], self.rules)
        for number, wave in enumerate(plan):
            if number and self.strategy.soak_seconds:
                logger.info("soaking %s s before wave %s", self.strategy.soak_seconds, number + 1)
                time.sleep(self.strategy.soak_seconds)
            not_started = self._wave([by_name[n] for n in wave], blocks)
            if self.stopped:
                rest = not_started + [by_name[n] for later in plan[number + 1 :] for n in later]
                logger.error(
                    "halting: %s of %s failed; %s not started",
                    self.failed,
                    self.started,
                    len(rest) + sum(1 for o in self.done if o.outcome == "halted"),
                )
                self.halt(rest)
                return True
        return False

    def _wave(self, specs: list[DeploySpec], blocks: Mapping[str, TargetBlock]) -> list[DeploySpec]:
        """Deploy one wave; returns the specs never started after a halt."""
        size = chunk_size(len(specs))
        waiting = [specs[i : i + size] for i in range(0, len(specs), size)][::-1]
        running: dict[PrefectFuture[list[InstanceOutcome]], Chunk] = {}
        finished: Queue[Finished] = Queue()
        not_started: list[DeploySpec] = []
        while waiting or running:
            # Twice as many deploy tasks as the task runner runs at once, the next
            # one submitted as one ends: the runner never waits for this loop.
            while waiting and not self.stopped and len(running) < 2 * DEPLOY_CONCURRENCY:
                chunk = waiting.pop()
                with self._lock:
                    self.started += len(chunk)
                future = _submit(deploy_instances, chunk, blocks, actor=self.actor, **self._options)
                running[future] = chunk
                future.add_done_callback(partial(_settle, into=finished))
            if self.stopped:
                not_started += [spec for chunk in reversed(waiting) for spec in chunk]
                waiting.clear()
                for queued in running:  # those no thread has picked up yet never start
                    _cancel(queued)
            if not running:
                break
            future, outcomes = finished.get()
            chunk = running.pop(future)
            if _cancelled(future):
                with self._lock:
                    self.started -= len(chunk)
                not_started += chunk
                continue
            if outcomes is None:
                outcomes = _outcomes(
                    chunk, future, actor=self.actor, count=self.count, counted=self.counted
                )
            self.done.extend(outcomes)
            self.progress.advance(len(outcomes))
        return not_started

    def halt(self, specs: list[DeploySpec]) -> None:
        """Record `specs` as `halted`: never started."""
        for spec in specs:
            record_outcome(spec, "halted", actor=self.actor, error="rollout halted")
            self.done.append(InstanceOutcome(spec.instance, spec.revision, "halted"))
        self.progress.advance(len(specs))


def rollout(
    specs: list[DeploySpec],
    strategy: Strategy,
    *,
    actor: str,
    progress: Progress,
    done: list[InstanceOutcome],
) -> bool:
    """Deploy `specs` in waves; returns True when the halt threshold stopped it."""
    return Rollout(strategy, actor=actor, progress=progress, done=done)(specs)


def _cancel(future: PrefectFuture[Any]) -> None:
    if isinstance(future, PrefectWrappedFuture):
        future.wrapped_future.cancel()


def _cancelled(future: PrefectFuture[Any]) -> bool:
    return isinstance(future, PrefectWrappedFuture) and bool(future.wrapped_future.cancelled())


def quoted(value: T) -> T:
    """`value`, passed to a task without Prefect walking it for futures to wait on:
    a plan, a chunk's specs or an outcome table holds none, and walking one of
    thousands of instances costs the flow's process milliseconds per instance.

    Only for a Prefect task's argument (Prefect unwraps it there): typed as the
    value so that the task's signature still checks it, which a plain function
    given one would not notice.
    """
    return cast(T, quote(value))


def _submit(
    deploy: Task[..., list[InstanceOutcome]],
    chunk: Chunk,
    blocks: Mapping[str, TargetBlock],
    *,
    actor: str,
    **options: float,
) -> PrefectFuture[list[InstanceOutcome]]:
    """Submit a deploy task for `chunk`, its run tagged with the chunk's channels.

    The run's name says which instances and revisions it deploys. Its tags stay
    few across a fleet on purpose: Prefect starts a concurrency-check service
    (a thread and an API client) per distinct tag set a process runs, so a tag
    naming the instance would grow the flow process with the fleet.
    """
    with tags(*sorted({f"channel:{spec.channel}" for spec in chunk})):
        targets = [blocks.get(spec.target) if spec.target else None for spec in chunk]
        # Quoted: Prefect does not walk every spec's manifest and every target
        # block looking for futures to wait on (there are none).
        future: PrefectFuture[list[InstanceOutcome]] = deploy.submit(
            quoted(chunk), quoted(targets), label=chunk_label(chunk), actor=actor, **options
        )
        return future


def _settle(future: PrefectFuture[list[InstanceOutcome]], *, into: Queue[Finished]) -> None:
    """Hand a finished deploy task to the rollout loop, with its outcomes if it completed.

    Runs in the thread that ran the task: reading a result from its state
    takes a hop through Prefect's event-loop thread (about 30 ms under a
    rollout's load), which would otherwise hold up the loop submitting the
    next deploys. Whatever goes wrong here, the loop gets the future, and
    `_outcomes` reads it again.
    """
    outcomes = None
    try:
        if not _cancelled(future):
            future.wait()  # done: this only sets the future's final state
            if future.state.is_completed():
                outcomes = future.result()
    except Exception:  # `_outcomes` reads it again, in the loop
        pass
    finally:  # even on a signal such as a suspension: the loop must never wait forever
        into.put((future, outcomes))


def _outcomes(
    chunk: Chunk,
    future: PrefectFuture[list[InstanceOutcome]],
    *,
    actor: str,
    count: Callable[[InstanceOutcome], None],
    counted: Mapping[tuple[str, int], InstanceOutcome],
) -> list[InstanceOutcome]:
    """A finished deploy task's outcomes. A task that failed as a whole (its
    deploys each catch their own errors: this is Prefect, the process or the
    database) leaves its instances' records as they were written. Those without
    an outcome are recorded here: a deploy that ended and was counted (`counted`)
    with the outcome it ended with, the others `failed`, and counted."""
    future.wait()  # done: this only sets the future's final state (else read from the server)
    if future.state.is_completed():
        return future.result()
    error = str(future.state.message or "deploy failed")
    try:
        future.result(raise_on_failure=True)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    outcomes = []
    for spec in chunk:
        recorded = rollouts.deployment_outcome(spec.instance, str(flow_run.id))
        if recorded not in (None, "running"):
            outcomes.append(
                InstanceOutcome(spec.instance, spec.revision, str(recorded), "recorded")
            )
            continue
        ended = counted.get((spec.instance, spec.revision))
        outcome = ended or InstanceOutcome(spec.instance, spec.revision, "failed", error)
        why = None if outcome.outcome == "succeeded" else outcome.detail or error
        try:
            record_outcome(spec, outcome.outcome, actor=actor, error=why)
        except FleetError as exc:  # closed meanwhile (recovery), or nothing to record on
            recorded = rollouts.deployment_outcome(spec.instance, str(flow_run.id))
            get_run_logger().warning("%s: %s not recorded: %s", spec.instance, outcome.outcome, exc)
            if recorded not in (None, "running"):
                outcome = InstanceOutcome(spec.instance, spec.revision, str(recorded), "recorded")
        if ended is None:
            count(outcome)
        outcomes.append(outcome)
    return outcomes


def deploy_then_ask(
    now: list[DeploySpec],
    waiting: list[DeploySpec],
    strategy: Strategy,
    *,
    requested_by: str,
    opened_at: datetime,
    notes: Mapping[str, str] | None = None,
) -> list[InstanceOutcome]:
    """The runbook's middle: deploy what needs no approval, then ask for the rest and
    deploy each instance as soon as it is approved. A halted rollout asks for nothing
    more."""
    done: list[InstanceOutcome] = []
    progress = Progress(len(now) + len(waiting))
    deploy = Rollout(strategy, actor=requested_by, progress=progress, done=done)
    if deploy(now):
        deploy.halt(waiting)
    elif waiting:
        closed = approval_gate(
            waiting,
            requested_by=requested_by,
            opened_at=opened_at,
            poll=strategy.approval_poll_seconds,
            deploy=deploy,
            notes=notes,
        )
        record_closed(closed, actor=requested_by, progress=progress, done=done)
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
