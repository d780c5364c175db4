"""Deploy targets as Prefect blocks. Each is configuration and a `get_client()` returning a
`fleet.agent.target.Target`; the logic lives in `fleet.agent`.

An instance names its target by block document name (`target: acme-prod` in the
fleet file); `load_target(name)` finds that document among the three types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, cast

from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import BlockDocumentCreate, BlockDocumentUpdate
from prefect.client.schemas.objects import BlockDocument
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from fleet.agent.client import AgentClient
from fleet.agent.command import CommandRunner
from fleet.agent.installation import DEFAULT_KEEP, Installation
from fleet.agent.models import check_instance_name
from fleet.agent.target import Target
from fleet.core.errors import FleetError, InputError, NotFoundError

__all__ = [
    "BLOCK_TYPES",
    "BlockRegistrationError",
    "CommandTarget",
    "FleetAgent",
    "LocalTarget",
    "SavedTargets",
    "TargetBlock",
    "TargetBlockConflict",
    "load_target",
    "load_target_blocks",
    "register_block_types",
    "save_host_targets",
]


class BlockRegistrationError(FleetError):
    """The block types could not be registered with the Prefect server."""


class TargetBlockConflict(InputError):
    """Target blocks of those names exist with other settings, and overwriting was not asked."""


def _empty_is_none(value: object) -> object:
    # A form's emptied field comes as "": it means no instance, not an invalid one.
    return None if value == "" else value


class FleetAgent(Block):
    """A Fleet agent running beside the instance, reached over HTTP.

    Without `instance` the agent serves one installation (`fleet agent serve`);
    with it, the agent is a host of many instances (`fleet agent serve
    --multi-instance`) and this block reaches the one named.
    """

    _block_type_name = "Fleet Agent"
    _block_type_slug = "fleet-agent"
    _description = (
        "A Fleet agent beside one instance, or one instance of an agent host: base URL, "
        "bearer token, instance on the host, timeouts."
    )

    base_url: str = Field(
        description="Base URL of the agent, e.g. https://acme-prod.internal:8700",
    )
    token: SecretStr = Field(description="Bearer token the agent was started with.")
    instance: Annotated[
        Annotated[str, AfterValidator(check_instance_name)] | None,
        BeforeValidator(_empty_is_none),
    ] = Field(
        default=None,
        description=(
            "The instance on an agent host serving many (started with --multi-instance); "
            "empty for an agent serving one installation."
        ),
    )
    timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds to wait for an answer; an apply downloads and unpacks artifacts.",
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for the TCP connection."
    )

    def get_client(self) -> AgentClient:
        return AgentClient(
            self.base_url,
            self.token.get_secret_value(),
            instance=self.instance,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
        )


class CommandTarget(Block):
    """The operator's own deploy command (helm, ansible-playbook, kubectl, a script)."""

    _block_type_name = "Fleet Command Target"
    _block_type_slug = "fleet-command-target"
    _description = (
        "Runs a command with the manifest JSON on stdin and FLEET_INSTANCE, FLEET_REVISION, "
        "FLEET_MANIFEST_HASH, FLEET_VERSIONS and FLEET_VERSION_<COMPONENT> in its environment."
    )

    apply_command: str = Field(
        description=(
            "Command template run for an apply; may use {instance}, {revision}, "
            "{manifest_hash}. Exit code 0 means success."
        ),
    )
    state_command: str | None = Field(
        default=None,
        description="Optional command printing the current state as JSON (manifest_hash, ...).",
    )
    health_command: str | None = Field(
        default=None, description="Optional command whose exit code 0 means healthy."
    )
    rollback_command: str | None = Field(
        default=None,
        description="Optional rollback command; FLEET_ROLLBACK_TO names the release or is empty.",
    )
    timeout: float = Field(default=600.0, gt=0, description="Seconds before a command is killed.")
    transient_exit_codes: list[int] = Field(
        default=[75], description="Exit codes that mean 'try again later' (75 is EX_TEMPFAIL)."
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for every command."
    )
    secret_environment: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra environment variables holding secrets (kept encrypted by Prefect).",
    )
    working_directory: str | None = Field(
        default=None, description="Directory the commands run in."
    )

    def get_client(self) -> CommandRunner:
        env = dict(self.environment)
        env.update({k: v.get_secret_value() for k, v in self.secret_environment.items()})
        return CommandRunner(
            apply_command=self.apply_command,
            state_command=self.state_command,
            health_command=self.health_command,
            rollback_command=self.rollback_command,
            timeout=self.timeout,
            transient_exit_codes=frozenset(self.transient_exit_codes),
            env=env,
            cwd=Path(self.working_directory) if self.working_directory else None,
        )


class LocalTarget(Block):
    """An installation directory on the machine running the flow: the agent's logic, no HTTP."""

    _block_type_name = "Fleet Local Target"
    _block_type_slug = "fleet-local-target"
    _description = "A release tree on a local directory, managed like the agent does."

    root: str = Field(description="Installation directory (releases/, current).")
    keep: int = Field(default=DEFAULT_KEEP, ge=1, description="Releases kept on disk.")
    fetch_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait when downloading an artifact."
    )
    health_timeout: float = Field(
        default=10.0, gt=0, description="Seconds before a component's health check is killed."
    )

    def get_client(self) -> Installation:
        return Installation(
            Path(self.root),
            keep=self.keep,
            fetch_timeout=self.fetch_timeout,
            health_timeout=self.health_timeout,
        )


BLOCK_TYPES: tuple[type[FleetAgent] | type[CommandTarget] | type[LocalTarget], ...] = (
    FleetAgent,
    CommandTarget,
    LocalTarget,
)


def register_block_types() -> list[str]:
    """Register every Fleet block type with the Prefect server; returns their slugs."""
    slugs = []
    for block_type in BLOCK_TYPES:
        try:
            block_type.register_type_and_schema()
        except Exception as exc:  # Prefect raises httpx and its own errors here
            raise BlockRegistrationError(
                f"Cannot register block type {block_type.get_block_type_slug()!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        slugs.append(block_type.get_block_type_slug())
    return slugs


def load_target(name: str) -> Target:
    """The client of the target block document called `name`, whichever type it is.

    Types are tried in the order of `BLOCK_TYPES` and the first document found
    wins: one server call for the common case (an agent), since every deploy
    task loads its instance's target.
    """
    for block_type in BLOCK_TYPES:
        try:
            # `load` is sync here: this function is only called outside an event loop.
            found = cast(FleetAgent | CommandTarget | LocalTarget, block_type.load(name))
        except ValueError:
            continue
        client: Target = found.get_client()
        return client
    slugs = ", ".join(t.get_block_type_slug() for t in BLOCK_TYPES)
    raise NotFoundError(f"No target block named {name!r} (looked in {slugs})")


TargetBlock = FleetAgent | CommandTarget | LocalTarget


def load_target_blocks(names: Collection[str]) -> dict[str, TargetBlock]:
    """The target block documents called `names` (those that exist), read with one
    request per block type and page: a rollout needs hundreds, and one request per
    instance would load the server.

    Each block is built from its document's data, as `Block.load` builds it,
    but without the `loaded` event Prefect emits per block: at 2,000 instances
    those were 2,000 events per run through the API servers, Redis and the
    event services, recording what Fleet records itself (each deploy's target).
    """
    wanted = set(names)
    found: dict[str, TargetBlock] = {}
    with get_client(sync_client=True) as client:
        for block_type in BLOCK_TYPES:
            for document in _documents_of(client, block_type):
                if document.name in wanted and document.name not in found:
                    found[document.name] = block_type.model_validate(document.data)
    return found


def _documents_of(client: SyncPrefectClient, block_type: type[Block]) -> list[BlockDocument]:
    """Every document of `block_type` (none when the type is not registered)."""
    try:
        # The server answers every document of the type at once (no paging).
        return client.read_block_documents_by_type(block_type.get_block_type_slug())
    except (ObjectNotFound, PrefectHTTPStatusError) as exc:
        if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 404:
            raise
        return []


@dataclass(frozen=True)
class SavedTargets:
    """What `save_host_targets` did: documents created, updated, and left as they were."""

    created: int
    updated: int
    unchanged: int


def save_host_targets(
    base_url: str,
    token: str,
    instances: Iterable[str],
    *,
    timeout: float = 300.0,
    connect_timeout: float = 5.0,
    overwrite: bool = False,
) -> SavedTargets:
    """One `FleetAgent` block per instance of an agent host, each named after its instance.

    `Block.save` registers the block type again before every document (three
    or four requests each, and a new client); this reads the existing
    documents once, saves the first new one with `save` (which registers the
    type), then creates the others with one request each on one client:
    measured 4 to 6 times faster than `save` per block.
    Documents that already hold these settings are left alone, so running it
    again changes nothing; documents of these names with other settings are
    an error unless `overwrite`, and then nothing is written.
    """
    blocks = {
        name: FleetAgent(
            base_url=base_url,
            token=SecretStr(token),
            instance=name,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        for name in dict.fromkeys(instances)
    }
    wanted = {name: _document_data(block) for name, block in blocks.items()}
    with get_client(sync_client=True) as client:
        existing = {d.name: d for d in _documents_of(client, FleetAgent) if d.name in wanted}
        differ = sorted(name for name, doc in existing.items() if doc.data != wanted[name])
        if differ and not overwrite:
            shown = ", ".join(differ[:5]) + (
                f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            )
            raise TargetBlockConflict(
                f"{len(differ)} FleetAgent blocks exist with other settings ({shown}); "
                "nothing was saved (overwrite them to replace their settings)"
            )
        new = [name for name in wanted if name not in existing]
        if not new and not differ:
            return SavedTargets(created=0, updated=0, unchanged=len(wanted))
        # `save` registers the block type and schema; its document names their ids.
        first = new[0] if new else differ[0]
        blocks[first].save(first, overwrite=True)
        saved = client.read_block_document_by_name(first, FleetAgent.get_block_type_slug())
        # One at a time: the server's writes are the cost, and requests in parallel
        # were measured no faster.
        for name in new[1:]:
            client.create_block_document(
                BlockDocumentCreate(
                    name=name,
                    data=wanted[name],
                    block_schema_id=saved.block_schema_id,
                    block_type_id=saved.block_type_id,
                )
            )
        for name in differ:
            if name == first:
                continue
            client.update_block_document(
                existing[name].id,
                BlockDocumentUpdate(block_schema_id=saved.block_schema_id, data=wanted[name]),
            )
    return SavedTargets(
        created=len(new), updated=len(differ), unchanged=len(existing) - len(differ)
    )


def _document_data(block: FleetAgent) -> dict[str, object]:
    """The block's data as its document holds it: every field, secrets in clear (the
    server encrypts them), as `Block.save` sends them."""
    return block.model_dump(
        mode="json", include=set(FleetAgent.model_fields), context={"include_secrets": True}
    )
