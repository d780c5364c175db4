"""The scale-out stack on one machine: Prefect's own scale-out, started by one command.

    python -m deployments.stack up [--file FLEET_FILE] [--name NAME] [ports ...]
    python -m deployments.stack status
    python -m deployments.stack down

`up` starts, with its data under FLEET_HOME/stack (default ./.fleet/stack):

- PostgreSQL databases NAME_prefect and NAME_fleet on the machine's server
  (127.0.0.1:5432; started when it is not running; databases created when missing);
- Redis for Prefect's messaging, event ordering and concurrency leases
  (prefect-redis): the server on --redis-port (database --redis-db), started
  by the stack when nothing answers there, with its data kept on disk
  (append-only file) so that a restart loses no message and no lease;
- two Prefect API servers without loop services (`prefect server start
  --no-services`) behind HAProxy on --prefect-port, which checks their health
  every second and retries a request on the other server when one does not
  answer;
- one process of Prefect's loop services (`prefect server services start`);
- two process workers of the work pool `fleet`, each in its own directory;
  they reach the flow code through the pull step of prefect.yaml
  (`set_working_directory` to FLEET_CODE_DIR, this checkout), and the
  deployments come from `prefect deploy --all`;
- beside each worker a warm starter (deployments.warmstart) that forks its flow
  runs' processes from one that has imported Prefect and the flows; the pool's
  command is the warm starter's launcher (--no-warm-start: no warm starters,
  every run's process a new interpreter);
- result storage that every worker reads: FLEET_HOME/stack/results;
- Fleet's database (`fleet init`, `fleet apply` of a copy of the fleet file
  with demo artifacts), `fleet setup`, a FleetAgent block and an agent per
  instance (as `make run` starts them), and Fleet's API with two workers.

Every process is supervised: one that dies is logged and restarted with
backoff (`deployments.supervisor`). Ctrl-C (or SIGTERM, or `down` from another
shell) stops everything the stack started. `status` shows what runs.
Running `up` again on the same FLEET_HOME and NAME reuses the data.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deployments import demo
from deployments.catalog import WORK_POOL
from deployments.prefect_server import server_env
from deployments.setup import HEARTBEAT_SECONDS
from deployments.supervisor import Child, Supervisor
from deployments.warmstart import SOCKET_VARIABLE, use_in_work_pool

__all__ = ["StackConfig", "StackError", "main"]

ROOT = Path(__file__).resolve().parent.parent
BANNER_READY = "The scale-out stack is up."
STOPPED = "stopped: every process of the stack has exited"
# Every process of a stack carries its directory in this variable: `down` and the
# tests find what a stack left behind by it, and nothing else.
MARKER = "FLEET_STACK"


class StackError(RuntimeError):
    """The stack could not be brought up (a port taken, a process that died)."""


@dataclass(frozen=True)
class StackConfig:
    home: Path
    fleet_file: Path
    name: str = "fleet_stack"
    host: str = "127.0.0.1"
    prefect_port: int = 4200  # the load balancer
    server_ports: tuple[int, ...] = (4201, 4202)
    api_port: int = 8000
    agent_port_base: int = 8100
    redis_port: int = 6379
    redis_db: int = 0
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    workers: int = 2
    worker_limit: int = 4
    # False: the instances' agents run elsewhere (an agent host, `fleet blocks
    # add-host`), and their target blocks are saved there; the stack starts none.
    agents: bool = True
    # False: no warm starters; the launcher starts every flow run as a new interpreter
    # (`python -m prefect.engine`), for comparison.
    warm_start: bool = True

    @property
    def work(self) -> Path:
        return self.home / "stack"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def server_url(self, i: int) -> str:
        return f"http://{self.host}:{self.server_ports[i]}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/{self.redis_db}"

    def database(self, which: str) -> str:
        """The PostgreSQL database of `which` (prefect or fleet)."""
        return f"{self.name}_{which}"

    @property
    def prefect_database_url(self) -> str:
        return (
            f"postgresql+asyncpg://{self.pg_user}@{self.pg_host}:{self.pg_port}/"
            f"{self.database('prefect')}"
        )

    @property
    def fleet_database_url(self) -> str:
        return (
            f"postgresql+psycopg://{self.pg_user}@{self.pg_host}:{self.pg_port}/"
            f"{self.database('fleet')}"
        )

    @property
    def state_file(self) -> Path:
        return self.work / "state.json"

    def warm_socket(self, i: int) -> Path:
        """Worker i's warm starter (deployments.warmstart): a short path (a socket's is
        at most 107 bytes), in a directory only this user reaches, named after the
        stack's directory."""
        import hashlib
        import tempfile

        digest = hashlib.sha256(str(self.work).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"fleet-warm-{digest}" / f"worker-{i + 1}.sock"


def config_to_json(config: StackConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def config_from_json(data: dict[str, Any]) -> StackConfig:
    """The configuration a running stack wrote into its state file."""
    values = dict(data)
    values["home"], values["fleet_file"] = Path(values["home"]), Path(values["fleet_file"])
    values["server_ports"] = tuple(values["server_ports"])
    return StackConfig(**values)


def stack_env(config: StackConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The settings every process of the stack runs with (the same on several machines,
    but for the addresses)."""
    c = config
    env = server_env(base)
    env.update(
        FLEET_HOME=str(c.home),
        FLEET_DATABASE_URL=c.fleet_database_url,
        FLEET_CODE_DIR=str(ROOT),
        # The approval form and notifications link to the console (Fleet's API serves it).
        FLEET_CONSOLE_URL=c.api_url,
        PREFECT_HOME=str(c.work / "prefect"),
        PREFECT_API_URL=f"{c.prefect_url}/api",
        PREFECT_UI_URL=c.prefect_url,
        PREFECT_UI_API_URL=f"{c.prefect_url}/api",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=c.prefect_database_url,
        # One process migrates (`prefect server database upgrade`) before the servers start.
        PREFECT_SERVER_DATABASE_MIGRATE_ON_START="false",
        # Redis, through prefect-redis: what several servers and the services share.
        PREFECT_MESSAGING_BROKER="prefect_redis.messaging",
        PREFECT_MESSAGING_CACHE="prefect_redis.messaging",
        PREFECT_SERVER_EVENTS_CAUSAL_ORDERING="prefect_redis.ordering",
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect_redis.lease_storage",
        PREFECT_REDIS_MESSAGING_URL=c.redis_url,
        PREFECT_SERVER_DOCKET_URL=c.redis_url,
        # Results every worker reads (a run resumed on another worker reuses its plan).
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
        PREFECT_LOCAL_STORAGE_PATH=str(c.work / "results"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Flow runs beat so that a run whose process dies is marked Crashed (fleet setup).
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_SECONDS),
        PYTHONUNBUFFERED="1",
    )
    # While Redis restarts (a second or two), the API answers 500 to what needs it: the
    # lease reads of a lock's release, the workers' polls. Those calls fail before they
    # change anything, and Prefect's clients retry them with backoff when told to.
    env.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "5")
    env[MARKER] = str(c.work)
    env.pop("PREFECT_API_KEY", None)
    return env


def haproxy_config(config: StackConfig) -> str:
    """HAProxy in front of the API servers: a server that fails two health checks (one a
    second) gets no requests until it passes two again; a request whose connection
    fails, or that gets no response at all, is retried once on the other server."""
    c = config
    servers = "\n".join(
        f"    server api-{i + 1} {c.host}:{port} check" for i, port in enumerate(c.server_ports)
    )
    return f"""# Written by python -m deployments.stack; changes are overwritten.
global
    maxconn 2048
    log stdout format raw local0 notice
    stats socket {c.work / "haproxy.sock"} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    timeout tunnel 1h
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response

frontend prefect
    bind {c.host}:{c.prefect_port}
    # The UI's bundles have content-hashed names: a browser keeps them for a year
    # instead of asking for them again on every page.
    acl ui_asset var(txn.ui_asset) -m bool
    http-request set-var(txn.ui_asset) bool(true) if {{ path_beg /assets/ }}
    http-response set-header Cache-Control "public, max-age=31536000, immutable" if ui_asset
    default_backend prefect-api

backend prefect-api
    balance roundrobin
    # HAProxy compresses (in C, libslz) and the API servers do not: Prefect's servers
    # gzip every response over 500 bytes at level 9 in Python, which cost the UI's
    # 4.4 MB bundle most of a second of a server's CPU on every cold page load.
    compression algo gzip
    compression type text/html text/css text/javascript application/javascript application/json
    compression offload
    option httpchk GET /api/health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}
"""


def haproxy_stats(config: StackConfig) -> list[dict[str, str]]:
    """HAProxy's `show stat`: one row per frontend, backend and server ([] when unreachable)."""
    sock = config.work / "haproxy.sock"
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        return []
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]


def haproxy_servers(config: StackConfig) -> dict[str, str]:
    """The load balancer's view: API server name -> UP, DOWN, ... ({} when unreachable)."""
    return {
        row["svname"]: row.get("status", "")
        for row in haproxy_stats(config)
        if row.get("pxname") == "prefect-api" and row.get("svname", "").startswith("api-")
    }


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _redis_ping(config: StackConfig) -> bool:
    import redis

    client = redis.Redis(host=config.host, port=config.redis_port, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _pg_connect(config: StackConfig, dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=config.pg_host,
        port=config.pg_port,
        user=config.pg_user,
        dbname=dbname,
        autocommit=True,
        connect_timeout=3,
    )


def _wait_postgres(config: StackConfig, say: Callable[[str], None]) -> None:
    """The machine's PostgreSQL answers; started as `make services` does when it does not."""
    import psycopg

    try:
        _pg_connect(config).close()
        return
    except psycopg.OperationalError:
        if config.pg_host not in ("127.0.0.1", "localhost"):
            raise StackError(
                f"PostgreSQL at {config.pg_host}:{config.pg_port} does not answer"
            ) from None
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").exists() else []
    if not versions:
        raise StackError("PostgreSQL is not installed (no /etc/postgresql)")
    say(f"PostgreSQL: starting the machine's server ({versions[-1]}/main)")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            _pg_connect(config).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise StackError("PostgreSQL did not start") from None
            time.sleep(0.5)


def prefect_template_name() -> str:
    """The template database holding Prefect's schema at this version of Prefect: its
    migrations take about 20 s on a new database, a copy of the template under a
    second. Named after Prefect's migration files, so a Prefect upgrade makes a new one."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.origin is not None
    versions = Path(spec.origin).parent / "server/database/_migrations/versions/postgresql"
    names = sorted(p.name for p in versions.glob("*.py"))
    if not names:
        raise StackError(f"no Prefect migrations found under {versions}")
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:10]
    return f"fleet_template_prefect_{digest}"


def _make_prefect_template(config: StackConfig, env: dict[str, str], log: Path) -> str:
    """The template database of Prefect's schema, migrated once per machine and Prefect
    version (under a temporary name, then renamed: two stacks starting at once never
    see a half-migrated template)."""
    import uuid

    import psycopg

    template = prefect_template_name()
    with _pg_connect(config) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone():
            return template
        temporary = f"fleet_template_tmp_{uuid.uuid4().hex[:12]}"
        conn.execute(f'CREATE DATABASE "{temporary}"')
    try:
        url = config.prefect_database_url.rsplit("/", 1)[0] + f"/{temporary}"
        _run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            {**env, "PREFECT_SERVER_DATABASE_CONNECTION_URL": url},
            log,
        )
        with _pg_connect(config) as conn:
            try:
                conn.execute(f'ALTER DATABASE "{temporary}" RENAME TO "{template}"')
                conn.execute(f'ALTER DATABASE "{template}" WITH IS_TEMPLATE true')
                temporary = ""
            except psycopg.errors.DuplicateDatabase:
                pass  # another stack made it meanwhile
    finally:
        if temporary:
            with _pg_connect(config) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{temporary}" WITH (FORCE)')
    return template


def _schema_version(config: StackConfig, dbname: str) -> str | None:
    with _pg_connect(config, dbname) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except Exception:
            return None
    return str(row[0]) if row else None


def ensure_databases(
    config: StackConfig, say: Callable[[str], None], env: dict[str, str], log: Path
) -> bool:
    """The stack's two databases exist; Prefect's is a copy of the template of its schema
    when new. Returns whether Prefect's database is at the schema of this Prefect."""
    _wait_postgres(config, say)
    prefect_db, fleet_db = config.database("prefect"), config.database("fleet")
    with _pg_connect(config) as conn:
        found = {
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname = ANY(%s)", ([prefect_db, fleet_db],)
            )
        }
    if fleet_db not in found:
        with _pg_connect(config) as conn:
            conn.execute(f'CREATE DATABASE "{fleet_db}"')
        say(f"PostgreSQL: created database {fleet_db}")
    template = _make_prefect_template(config, env, log)
    if prefect_db not in found:
        with _pg_connect(config) as conn:
            conn.execute(f'CREATE DATABASE "{prefect_db}" TEMPLATE "{template}"')
        say(f"PostgreSQL: created database {prefect_db} (a copy of {template})")
        return True
    return _schema_version(config, prefect_db) == _schema_version(config, template)


def drop_databases(config: StackConfig) -> None:
    """Drop the stack's two databases (tests; an operator may too, to start over)."""
    with _pg_connect(config) as conn:
        for which in ("prefect", "fleet"):
            conn.execute(f'DROP DATABASE IF EXISTS "{config.database(which)}" WITH (FORCE)')


@dataclass
class Stack:
    """The processes of the stack, started in order and stopped in reverse.

    While it comes up, a child that dies stops it (a port taken, a broken
    install: restarting would not help). Once it is up, `supervise()` keeps
    it up: a child that dies is logged and restarted with backoff.
    """

    config: StackConfig
    say: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)
    cpu: float = 0.0
    _sup: Supervisor | None = None
    _written: dict[str, int] = field(default_factory=dict)

    @property
    def sup(self) -> Supervisor:
        if self._sup is None:
            self._sup = Supervisor(
                env=stack_env(self.config), cwd=ROOT, logs=self.config.work / "logs", say=self.say
            )
        return self._sup

    @property
    def children(self) -> list[Child]:
        return self.sup.children

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        return self.sup.start(name, argv, cwd=cwd, env=env)

    def check_alive(self) -> None:
        """While coming up: a child that died is an error."""
        for child, code in self.sup.dead():
            tail = child.log.read_text(errors="replace")[-2000:]
            raise StackError(f"{child.name} exited with {code}; its log {child.log}:\n{tail}")

    def wait_for(self, what: str, probe: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if probe():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise StackError(f"{what} did not come up within {timeout:.0f} s")

    def supervise(self) -> None:
        """Once up: restart what died (with backoff), and say so."""
        self.sup.tick()
        self.write_state()

    def write_state(self, **extra: Any) -> None:
        pids = {c.name: c.proc.pid for c in self.children}
        if pids == self._written and not extra:
            return
        self._written = pids
        c = self.config
        state = {
            "pid": os.getpid(),
            "prefect_url": c.prefect_url,
            "api_url": c.api_url,
            "config": config_to_json(c),
            "children": pids,
        }
        if c.state_file.exists():
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(c.state_file.read_text())
                state.update({k: v for k, v in old.items() if k not in state})
        state.update(extra)
        tmp = c.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, c.state_file)

    def stop(self) -> None:
        """Stop the children in reverse order of start: the workers first (SIGINT: they
        let go of their runs), then the rest (SIGTERM); SIGKILL after a grace period."""
        if self._sup is not None:
            workers = [c.name for c in self._sup.children if c.name.startswith("worker-")]
            self._sup.stop(first=workers, first_signal=signal.SIGINT)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def _run(argv: Sequence[str], env: dict[str, str], log: Path, timeout: float = 300) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        done = subprocess.run(
            list(argv),
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise StackError(f"{' '.join(argv[:6])} failed ({done.returncode}); {log}:\n{tail}")


def _private_directory(path: Path) -> None:
    """Make `path` a directory only this user reaches, or refuse one that is not."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StackError(
            f"{path} is not a directory of this user's that only it reaches "
            f"(mode {stat.filemode(st.st_mode)}, owner {st.st_uid}): remove it"
        )


def _workers_online(config: StackConfig) -> Callable[[], bool]:
    def probe() -> bool:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            found = client.read_workers_for_work_pool(WORK_POOL)
        online = {w.name for w in found if str(w.status).upper().endswith("ONLINE")}
        return all(f"worker-{i + 1}" in online for i in range(config.workers))

    return probe


def ensure_redis(stack: Stack) -> bool:
    """Redis answers on the configured port; started by the stack (supervised, with an
    append-only file under the stack's directory) when nothing answers there.
    Returns whether the stack runs it."""
    c = stack.config
    if _redis_ping(c):
        stack.say(f"Redis: using the server on {c.host}:{c.redis_port} (database {c.redis_db})")
        return False
    if _port_open(c.host, c.redis_port):
        raise StackError(f"port {c.redis_port} is taken by something that is not Redis")
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server is not installed (Debian: apt-get install redis-server)")
    data = c.work / "redis"
    data.mkdir(parents=True, exist_ok=True)
    stack.say(f"Redis: starting redis-server on {c.host}:{c.redis_port} (data in {data})")
    stack.start(
        "redis",
        [
            server,
            "--bind",
            c.host,
            "--port",
            str(c.redis_port),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
        ],
    )
    stack.wait_for("Redis", lambda: _redis_ping(c), timeout=30)
    return True


def bring_up(stack: Stack) -> dict[str, str]:
    """Start everything in order, overlapping what does not depend on each other;
    returns the API tokens by role."""
    c = stack.config
    say = stack.say
    t0 = time.monotonic()
    py = sys.executable
    prefect = [py, "-m", "prefect"]
    fleet_cli = [py, "-m", "fleet.cli.main"]
    env = stack.sup.env
    logs = c.work / "logs"
    for d in ("prefect", "results", "logs"):
        (c.work / d).mkdir(parents=True, exist_ok=True)

    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise StackError("haproxy is not installed: `make haproxy` (Debian's package, needs root)")

    migrate_log = logs / "prefect-migrate.log"
    current = ensure_databases(c, say, dict(env), migrate_log)
    if not current:
        # A database of an older Prefect: migrated in one process before the servers start.
        say(f"Prefect database: migrating {c.database('prefect')}")
        _run([*prefect, "server", "database", "upgrade", "-y"], dict(env), migrate_log)
    ensure_redis(stack)
    cfg = c.work / "haproxy.cfg"
    cfg.write_text(haproxy_config(c))
    say(f"load balancer: HAProxy on {c.prefect_url} -> {', '.join(map(str, c.server_ports))}")
    stack.start("haproxy", [haproxy, "-db", "-f", str(cfg)])
    stack.timings["databases, Redis, HAProxy"] = time.monotonic() - t0

    # The first server registers Prefect's block types; the others and the services
    # process skip it (several at once could race on a new database).
    no_register = {"PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false"}
    for i, port in enumerate(c.server_ports):
        say(f"Prefect API server {i + 1}: starting on {c.server_url(i)} (--no-services)")
        stack.start(
            f"prefect-api-{i + 1}",
            [*prefect, "server", "start", "--no-services", "--host", c.host, "--port", str(port)],
            env=None if i == 0 else no_register,
        )
    say("Prefect services: starting (prefect server services start)")
    stack.start("prefect-services", [*prefect, "server", "services", "start"], env=no_register)

    # Fleet's database while the Prefect servers start.
    from fleet.cli.main import main as fleet

    copy = demo.prepare_fleet_file(c, say)  # type: ignore[arg-type]
    names = [str(i["name"]) for i in demo._instances(copy)]
    say(f"Fleet database: fleet init, fleet apply ({c.database('fleet')})")
    if fleet(["init"]) != 0:
        raise StackError("could not create Fleet's database")
    with contextlib.redirect_stdout(io.StringIO()) as applied:
        code = fleet(["apply", str(copy), "--actor", demo.ACTOR])
    say("  " + (applied.getvalue().splitlines() or ["(no output)"])[0])
    if code != 0:
        raise StackError(f"could not apply {copy} to Fleet's database")
    issued = demo.api_tokens(c)  # type: ignore[arg-type]

    for i in range(len(c.server_ports)):
        stack.wait_for(
            f"Prefect API server {i + 1}",
            lambda i=i: _http_ok(f"{c.server_url(i)}/api/health"),  # type: ignore[misc]
            timeout=180,
        )
    stack.wait_for("the load balancer", lambda: _http_ok(f"{c.prefect_url}/api/health"), 30)
    stack.timings["Prefect servers up"] = time.monotonic() - t0

    say("Prefect workspace: fleet setup")
    if fleet(["setup"]) != 0:
        raise StackError("fleet setup failed")
    say("deployments: prefect deploy --all (prefect.yaml)")
    deploy_log = logs / "prefect-deploy.log"
    with deploy_log.open("ab") as out:
        deploy = subprocess.Popen(
            [*prefect, "--no-prompt", "deploy", "--all"],
            env=dict(env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    # The pool's command is the launcher; without warm starters it starts runs cold.
    use_in_work_pool(WORK_POOL)
    for i in range(c.workers):
        name = f"worker-{i + 1}"
        directory = c.work / "workers" / name
        directory.mkdir(parents=True, exist_ok=True)
        warm_env: dict[str, str] = {}
        if c.warm_start:
            # Its flow runs are forked from a warm starter beside it (deployments.warmstart).
            sock = c.warm_socket(i)
            _private_directory(sock.parent)
            warm = [py, "-m", "deployments.warmstart", "serve", "--socket", str(sock)]
            stack.start(f"warm-{i + 1}", warm, cwd=directory)
            warm_env[SOCKET_VARIABLE] = str(sock)
        argv = ["worker", "start", "--pool", WORK_POOL, "--type", "process", "--name", name]
        stack.start(
            name, [*prefect, *argv, "--limit", str(c.worker_limit)], cwd=directory, env=warm_env
        )
    starts = "with warm starters" if c.warm_start else "without warm starters"
    say(f"workers: {c.workers} in {c.work / 'workers'}, pool {WORK_POOL!r}, {starts}")
    say(f"Fleet API: starting on {c.api_url} (2 workers)")
    api_port = str(c.api_port)
    stack.start(
        "fleet-api",
        [*fleet_cli, "api", "serve", "--host", c.host, "--port", api_port, "--workers", "2"],
    )
    if c.agents:
        say(f"agents: starting {len(names)} from port {c.agent_port_base}")
        agents_started = time.monotonic()
        reached = _start_agents_nowait(stack, names)
        demo.register_targets(reached)
        say(f"target blocks: {len(reached)} FleetAgent blocks named after the instances")
        for name, (url, token) in reached.items():
            stack.wait_for(f"agent {name} at {url}", demo._agent_ready(url, token), timeout=60)
        stack.timings["agents up"] = time.monotonic() - agents_started
    else:
        say(f"agents: none started; the {len(names)} instances' target blocks are saved elsewhere")
    stack.wait_for("the Fleet API", lambda: _http_ok(f"{c.api_url}/health"), timeout=60)
    stack.wait_for("the workers", _workers_online(c), timeout=60)
    while deploy.poll() is None:
        stack.check_alive()
        time.sleep(0.2)
    if deploy.returncode != 0:
        tail = deploy_log.read_text(errors="replace")[-3000:]
        raise StackError(f"prefect deploy --all failed; {deploy_log}:\n{tail}")
    # Now that recover/fleet is deployed, setup points the crash automation at it.
    with contextlib.redirect_stdout(io.StringIO()) as again:
        if fleet(["setup"]) != 0:
            raise StackError("fleet setup (after prefect deploy) failed")
    say("Prefect workspace: fleet setup again (" + _setup_summary(again.getvalue()) + ")")
    stack.timings["up"] = time.monotonic() - t0
    stack.cpu = cpu_seconds(c.work)
    return issued


def _setup_summary(output: str) -> str:
    """`fleet setup`'s steps that changed something (its automations, once the flows are
    deployed)."""
    changed = [
        line for line in output.splitlines() if line.strip() and not line.endswith(": unchanged")
    ]
    return "; ".join(changed) or "nothing changed"


def _start_agents_nowait(stack: Stack, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """One agent per instance, as `make run` starts them; their readiness is awaited later."""
    c = stack.config
    reached: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(names):
        directory = c.work / "agents" / name
        token_file = demo._agent_token(directory)
        port = c.agent_port_base + i
        stack.start(
            f"agent-{name}",
            [
                sys.executable,
                "-m",
                "fleet.agent",
                "agent",
                "serve",
                "--root",
                str(directory / "root"),
                "--port",
                str(port),
                "--host",
                c.host,
                "--token-file",
                str(token_file),
            ],
        )
        reached[name] = (f"http://{c.host}:{port}", token_file.read_text().strip())
    return reached


def banner(stack: Stack, issued: dict[str, str]) -> str:
    c = stack.config
    servers = ", ".join(c.server_url(i) for i in range(len(c.server_ports)))
    return f"""
{BANNER_READY} ({stack.timings["up"]:.1f} s)
  Fleet console    {c.api_url}/
  Prefect UI/API   {c.prefect_url} (HAProxy -> {servers})
  Fleet API        {c.api_url}/docs
  databases        {c.database("prefect")}, {c.database("fleet")} on {c.pg_host}:{c.pg_port}
  Redis            {c.redis_url}
  workers          {c.workers} x pool {WORK_POOL!r} (limit {c.worker_limit} each)
  logs             {c.work / "logs"}

API tokens (Authorization: Bearer ...):
  operator      {issued["operator"]}
  approver      {issued["approver"]}

Start a rollout: curl -X POST -H "Authorization: Bearer {issued["operator"]}" \\
                   -H 'Content-Type: application/json' -d '{{}}' {c.api_url}/rollouts
Status: python -m deployments.stack status   Stop: Ctrl-C or python -m deployments.stack down
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    return False


def processes_of(work: Path) -> list[int]:
    """Every live process that belongs to the stack in `work` (its marker variable)."""
    needle = f"{MARKER}={work}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and not _zombie(int(entry.name)):
            found.append(int(entry.name))
    return found


def cpu_seconds(work: Path) -> float:
    """CPU time (user and system) of this process, its finished children and every live
    process of the stack."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in processes_of(work):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    t = os.times()
    return total + t.user + t.system + t.children_user + t.children_system


def _read_state(config: StackConfig) -> dict[str, Any] | None:
    try:
        return dict(json.loads(config.state_file.read_text()))
    except (OSError, ValueError):
        return None


def _up_running(config: StackConfig) -> int | None:
    state = _read_state(config)
    if state is None:
        return None
    pid = int(state.get("pid", 0))
    if pid and _pid_alive(pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"deployments.stack" in cmdline:
            return pid
    return None


def down(config: StackConfig, say: Callable[[str], None] = print, timeout: float = 90) -> int:
    """Stop a running `up` (SIGTERM: it stops its children in order), then end whatever
    the stack left behind (a `up` that was SIGKILLed leaves its children)."""
    pid = _up_running(config)
    if pid is not None:
        say(f"stopping the stack (process {pid}) ...")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = processes_of(config.work)
    for p in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    if left:
        say(f"ended {len(left)} leftover process(es) of the stack")
    # The warm starters' sockets (a SIGKILLed warm starter leaves its socket).
    shutil.rmtree(config.warm_socket(0).parent, ignore_errors=True)
    if pid is None and not left:
        say("the stack is not running")
    return 0


def status(config: StackConfig, say: Callable[[str], None] = print) -> int:
    """What runs: each child with its pid, and a probe of each service. Exit 0 when
    everything answers, 1 otherwise."""
    state = _read_state(config)
    up_pid = _up_running(config)
    if state is None or up_pid is None:
        left = processes_of(config.work)
        say(
            "the stack is not running"
            + (f" ({len(left)} leftover processes: run `down`)" if left else "")
        )
        return 1
    c = config
    ok = True
    say(f"stack {c.work} (process {up_pid})")
    for name, pid in state.get("children", {}).items():
        alive = _pid_alive(int(pid))
        ok &= alive
        say(f"  {name:<22} {pid:>7}  {'running' if alive else 'DOWN'}")

    def probe(what: str, check: Callable[[], bool]) -> None:
        nonlocal ok
        try:
            good = check()
        except (httpx.HTTPError, OSError):
            good = False
        ok &= good
        say(f"  {what:<30} {'ok' if good else 'NOT ANSWERING'}")

    prefect_url = str(state.get("prefect_url", c.prefect_url))
    api_url = str(state.get("api_url", c.api_url))
    probe("Prefect API (load balancer)", lambda: _http_ok(f"{prefect_url}/api/health"))
    for server, lb_state in sorted(haproxy_servers(c).items()):
        say(f"  {'  load balancer: ' + server:<30} {lb_state}")
    probe("Fleet API", lambda: _http_ok(f"{api_url}/health"))
    probe("Redis", lambda: _redis_ping(c))
    return 0 if ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(config: StackConfig) -> int:
    if (pid := _up_running(config)) is not None:
        print(f"fleet stack: already running (process {pid}); `down` first", file=sys.stderr)
        return 1
    leftovers = processes_of(config.work)
    if leftovers:
        print(
            f"fleet stack: {len(leftovers)} processes of an earlier run are still there; "
            "`python -m deployments.stack down` first",
            file=sys.stderr,
        )
        return 1
    stack = Stack(config, say=lambda line: print(line, flush=True))
    # What this process does itself (init, apply, setup, blocks) uses the children's settings.
    os.environ.update(
        {k: v for k, v in stack.sup.env.items() if k.startswith(("FLEET_", "PREFECT_"))}
    )
    # Explicit handlers: a shell's background job starts with SIGINT ignored, and an
    # ignored signal would stay ignored in every child too (exec keeps SIG_IGN).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    config.work.mkdir(parents=True, exist_ok=True)
    code = 0
    try:
        stack.write_state(up=False)
        issued = bring_up(stack)
        stack.write_state(up=True, up_seconds=round(stack.timings["up"], 1))
        print(banner(stack, issued), flush=True)
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in stack.timings.items() if k != "up")
        print(f"start-up: {timings}; {stack.cpu:.0f} CPU-seconds in all", flush=True)
        while True:
            stack.supervise()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except StackError as exc:
        print(f"fleet stack: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        with contextlib.suppress(OSError):
            config.state_file.unlink()
    print(STOPPED, flush=True)
    return code


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"Invalid ports: {text!r}") from None
    if len(ports) < 1 or any(not 0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"Invalid ports: {text!r}")
    return ports


def _parse(argv: Sequence[str] | None) -> tuple[str, StackConfig]:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m deployments.stack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--file", type=Path, default=demo.EXAMPLE, help="fleet file (up)")
    parser.add_argument(
        "--name",
        default=env.get("FLEET_STACK_NAME", "fleet_stack"),
        help="names the PostgreSQL databases NAME_prefect and NAME_fleet",
    )
    parser.add_argument(
        "--prefect-port",
        type=int,
        default=int(env.get("FLEET_STACK_PREFECT_PORT", 4200)),
        help="the load balancer in front of the Prefect API servers (4200)",
    )
    parser.add_argument(
        "--server-ports",
        type=_ports,
        default=_ports(env.get("FLEET_STACK_SERVER_PORTS", "4201,4202")),
        help="one per Prefect API server (4201,4202)",
    )
    parser.add_argument("--api-port", type=int, default=int(env.get("FLEET_STACK_API_PORT", 8000)))
    parser.add_argument(
        "--agent-port-base", type=int, default=int(env.get("FLEET_STACK_AGENT_PORT_BASE", 8100))
    )
    parser.add_argument(
        "--redis-port", type=int, default=int(env.get("FLEET_STACK_REDIS_PORT", 6379))
    )
    parser.add_argument("--redis-db", type=int, default=int(env.get("FLEET_STACK_REDIS_DB", 0)))
    parser.add_argument("--workers", type=int, default=2, help="Prefect process workers (2)")
    parser.add_argument("--worker-limit", type=int, default=4, help="runs per worker (4)")
    parser.add_argument(
        "--no-agents",
        action="store_true",
        help="start no agent: the instances run on agent hosts of their own, whose target "
        "blocks are saved with `fleet blocks add-host`",
    )
    parser.add_argument(
        "--no-warm-start",
        action="store_true",
        help="start no warm starters: each flow run's process is a new interpreter "
        "(python -m prefect.engine), to compare",
    )
    args = parser.parse_args(argv)
    if not args.name.replace("_", "").isalnum() or not args.name.isascii():
        parser.error(f"Invalid --name: {args.name!r} (letters, digits and _ only)")
    if args.workers < 1 or args.worker_limit < 1:
        parser.error("--workers and --worker-limit must be at least 1")
    home = Path(env.get("FLEET_HOME") or ".fleet").resolve()
    return args.command, StackConfig(
        home=home,
        fleet_file=args.file.resolve(),
        name=args.name.lower(),
        prefect_port=args.prefect_port,
        server_ports=args.server_ports,
        api_port=args.api_port,
        agent_port_base=args.agent_port_base,
        redis_port=args.redis_port,
        redis_db=args.redis_db,
        workers=args.workers,
        worker_limit=args.worker_limit,
        agents=not args.no_agents,
        warm_start=not args.no_warm_start,
    )


def main(argv: Sequence[str] | None = None) -> int:
    command, config = _parse(argv)
    if command == "up":
        return up(config)
    # `down` and `status` act on the stack that runs under FLEET_HOME, whatever its ports.
    state = _read_state(config)
    if state is not None and isinstance(state.get("config"), dict):
        with contextlib.suppress(TypeError, KeyError, ValueError):
            config = config_from_json(state["config"])
    if command == "down":
        return down(config)
    return status(config)


if __name__ == "__main__":
    sys.exit(main())
