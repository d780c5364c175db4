"""Approvals through the real Prefect UI's Resume form: one person counts once however
the name is written, a name with a zero-width space is refused, a verified-only
channel ignores typed names, a one-time code approves as its holder, a spent code
is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fleet.services import approvals, audit, codes, deployments
from fleet.services.tokens import Principal, Role, create_token
from flows.compile_and_deploy import compile_and_deploy
from tests.browser.conftest import in_thread, run_in_thread
from tests.flows.runs import FAST, form_description, paused_for, paused_run
from tests.flows.support import build_world

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("prefect_ui", "fleet_db")]


def field(dialog: Any, label: str) -> Any:
    """The form's text field whose label is exactly `label`."""
    return (
        dialog.locator(".p-label")
        .filter(has=dialog.page.get_by_text(re.compile(rf"^{label}( \(Optional\))?$")))
        .locator("textarea")
    )


def resume(page: Any, url: str, run_id: str, shot: str, **values: str) -> str:
    """Open the paused run, fill its Resume form, submit; returns the form's text."""
    page.goto(f"{url}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Resume", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Approval needed").wait_for()
    text = str(dialog.inner_text())
    for label, value in values.items():
        field(dialog, label.capitalize()).fill(value)
    page.shot(shot)
    dialog.get_by_role("button", name="Submit", exact=True).click()
    dialog.wait_for(state="hidden")
    return text


def finish(thread: Any, box: dict[str, Any]) -> dict[str, Any]:
    thread.join(120)
    assert not thread.is_alive() and "error" not in box, box
    return dict(box["result"])


def refusals(run_id: str) -> list[dict[str, Any]]:
    return [
        dict(e.details)
        for e in audit.events()
        if e.action == "approval.refused" and e.flow_run_id == run_id
    ]


def test_carol_then_Carol_counts_once_and_a_zero_width_space_is_refused(
    tmp_path: Any, start_agent: Any, page: Any, prefect_ui: str
) -> None:
    world = in_thread(
        build_world, tmp_path, start_agent, [("lts-1", "manual", None)], approvals_required=2
    )
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    first = resume(page, prefect_ui, run_id, "carol", approver="carol")
    assert "Requested by alice (who cannot approve it)" in first
    paused_for(run_id, 2)
    resume(page, prefect_ui, run_id, "Carol", approver="Carol")
    paused_for(run_id, 3)  # one person: still one approval of two
    assert world.applies("lts-1") == []
    form = form_description(run_id)
    assert "1 more approval(s)" in form and "Approved so far by: carol" in form

    resume(page, prefect_ui, run_id, "alice-zwsp", approver="alice\u200b")
    paused_for(run_id, 4)  # refused, recorded, still waiting
    (refused,) = refusals(run_id)
    assert refused["approver"] == "alice\u200b"
    assert "U+200B is an invisible format character" in refused["reason"]
    page.goto(f"{prefect_ui}/runs/flow-run/{run_id}")
    logged = page.get_by_text("approval input refused").first
    logged.wait_for()  # the run's log says so
    logged.scroll_into_view_if_needed()
    page.shot("refusal-in-the-log")

    resume(page, prefect_ui, run_id, "dave", approver="dave")
    assert finish(thread, box)["outcomes"] == {"lts-1": "succeeded"}
    given = deployments.approvals_for("lts-1", flow_run_id=run_id)
    assert [(a.approver, a.verified) for a in given] == [("carol", False), ("dave", False)]


def test_a_verified_only_channel_counts_codes_not_typed_names(
    tmp_path: Any, start_agent: Any, page: Any, prefect_ui: str
) -> None:
    def world_with_verified_lts() -> Any:
        world = build_world(
            tmp_path, start_agent, [("lts-1", "manual", None)], approvals_required=2
        )
        world.data["channels"][1]["verified_approvals"] = True
        world.apply()
        return world

    world = in_thread(world_with_verified_lts)
    for name in ("bob", "carol"):
        create_token(name, "approver", actor="tests")
    thread, box = run_in_thread(compile_and_deploy, requested_by="alice", strategy=FAST)
    run_id = paused_run("compile-and-deploy")

    text = resume(page, prefect_ui, run_id, "typed-bob", approver="bob")
    assert "Only verified approvals count for lts-1" in text
    assert "Channel manual counts verified approvals only" in text
    assert f"fleet approvals code {run_id}" in text
    paused_for(run_id, 2)  # recorded, not counted
    assert "Approved so far by: none yet" in form_description(run_id)

    bob = codes.issue_code(run_id, principal=Principal("bob", Role.APPROVER)).code
    resume(page, prefect_ui, run_id, "code-bob", approver="mallory", code=bob)
    paused_for(run_id, 3)
    assert "Approved so far by: bob" in form_description(run_id)
    assert world.applies("lts-1") == []

    resume(page, prefect_ui, run_id, "spent-code", approver="carol", code=bob)
    paused_for(run_id, 4)
    (refused,) = refusals(run_id)
    assert "used already" in refused["reason"] and refused["typed"] == "carol"

    carol = codes.issue_code(run_id, principal=Principal("carol", Role.APPROVER)).code
    resume(page, prefect_ui, run_id, "code-carol", code=carol, comment="checked")
    assert finish(thread, box)["outcomes"] == {"lts-1": "succeeded"}
    given = approvals.given(run_id)
    assert [(a.approver, a.verified) for a in given] == [
        ("bob", False),  # typed: recorded, did not count
        ("bob", True),  # the code's holder, not the typed "mallory"
        ("carol", True),
    ]
