"""Browser tests: Debian's Chromium driven by Playwright against a real Prefect
server with its UI (the test harness's server has no UI), real agents and a
temporary Fleet database."""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import start_agent  # noqa: F401  (fixture)
from tests.e2e.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling out to the
# network at start (refused on a closed machine); sandboxing needs a non-root user.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-output" / "browser"


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` with the UI, on a free port: its base URL."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # once per session: this run's only
    home = tmp_path_factory.mktemp("prefect-ui")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        # The UI's own calls go here (by default it would call port 4200).
        PREFECT_UI_API_URL=f"{url}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    log = (home / "server.log").open("wb")
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {(home / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prefect server did not start in 120 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@contextlib.contextmanager
def fleet_api(env: dict[str, str], log: Path, port: int | None = None) -> Iterator[str]:
    """`fleet api serve` (the REST API and the console) in a child process: its URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "fleet.cli.main", "api", "serve", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"fleet api serve exited: {log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("fleet api serve did not start in 60 s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def prefect_ui(ui_server: str) -> Iterator[str]:
    """Prefect clients of this test, in every thread, talk to the UI server."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with contextlib.ExitStack() as stack:
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: f"{ui_server}/api"}))
        # As prefect_test_harness does: threads started without a context copy see it too.
        stack.enter_context(
            prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()
            )
        )
        _drain_prefect_workers()
        in_thread(_cancel_unfinished_runs)
        yield ui_server
        in_thread(_cancel_unfinished_runs)
        _drain_prefect_workers()


def _cancel_unfinished_runs() -> None:
    """Cancel every run the session's UI server has not finished. The server outlives
    each test: a run a failed test left waiting for approval would otherwise be the
    paused run the next test finds and drives (`paused_run` takes the first one)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    unfinished = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(
                any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
            )
        )
    )
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=unfinished):
            client.set_flow_run_state(
                run.id, Cancelled(message="left unfinished by a browser test"), force=True
            )


def _drain_prefect_workers() -> None:
    """Flush and stop Prefect's event and log workers. They are one per process and
    keep the API URL they started with: without this, events of later tests (task
    runs are recorded from events) would go to the wrong server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    def drain() -> None:
        for worker in (APILogWorker, EventsWorker):
            with contextlib.suppress(RuntimeError):  # never started
                worker.drain_all()

    in_thread(drain)  # not in the main thread, where Playwright may run an event loop


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Playwright's sync API runs an event loop in the
    main thread while it is open, which would make every later sync Prefect call in
    the session (`Block.save`, ...) hand back a coroutine: it must not outlive the module."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; `page.shot(name)` saves a screenshot under test-output/browser."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = request.node.name

    def shot(name: str) -> None:
        pg.screenshot(path=str(SCREENSHOTS / f"{test}-{name}.png"), full_page=True)

    pg.shot = shot
    yield pg
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        shot("failed")
    context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn` in a thread and return its result. Playwright's sync API keeps an
    event loop running in the main thread, and Prefect's sync/async calls
    (`Block.save`, `RunnerDeployment.apply`) would then hand back a coroutine."""
    thread, box = run_in_thread(lambda: fn(*args, **kwargs))
    thread.join(120)
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_in_thread(fn: Callable[..., Any], **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `fn` in a thread that sees this test's Prefect settings (a context copy)."""
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["result"] = context.run(fn, **params)
        except BaseException as exc:  # the test reads it
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box
