"""The apply logic on a directory, without HTTP (what LocalTarget uses)."""

from __future__ import annotations

import fcntl
import io
import os
import tarfile
from pathlib import Path

import pytest

from fleet.agent.errors import (
    ArtifactError,
    ChecksumMismatch,
    ManifestRejected,
    PermanentTargetError,
    ReleaseNotFound,
    TargetBusy,
    TransientTargetError,
    UnsafeArchive,
)
from fleet.agent.installation import Installation
from fleet.agent.models import Manifest
from fleet.agent.target import Target
from fleet.artifacts import ArtifactRef, sha256_file
from tests.agent.support import make_manifest

V1 = {"api": "1.0.0", "web": "1.0.0"}
V2 = {"api": "2.0.0", "web": "1.0.0", "worker": "2.0.0"}


def snapshot(root: Path) -> dict[str, object]:
    """Everything an apply may change, except the apply log and the (emptied) staging area."""
    tree = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if "staging" not in p.parts and p.name != "apply-log.jsonl"
    )
    link = os.readlink(root / "current") if (root / "current").is_symlink() else None
    return {"tree": tree, "current": link}


def test_apply_installs_each_component_and_switches_current(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    m = make_manifest(refs, V1)
    result = inst.apply(m)
    assert result.changed and result.previous_hash is None
    current = tmp_path / "current"
    assert os.readlink(current) == f"releases/{m.manifest_hash}"
    assert (current / "api" / "VERSION").read_text() == "1.0.0\n"
    assert os.access(current / "web" / "bin" / "healthcheck", os.X_OK)
    state = inst.state()
    assert state.manifest_hash == m.manifest_hash
    assert state.components == V1
    assert state.revision == 1 and state.instance == "acme-prod"
    assert state.applied_at is not None
    assert list((tmp_path / "staging").iterdir()) == []


def test_apply_of_the_current_manifest_does_nothing_and_says_so(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    m = make_manifest(refs, V1)
    inst.apply(m)
    before = snapshot(tmp_path)
    again = inst.apply(m)
    assert not again.changed
    assert "already current" in again.message
    assert snapshot(tmp_path) == before
    assert [e.outcome for e in inst.apply_log()] == ["applied", "noop"]


def test_same_content_under_a_new_revision_is_recorded_without_reinstalling(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    m = make_manifest(refs, V1)
    inst.apply(m)
    result = inst.apply(m.model_copy(update={"revision": 4}))
    assert not result.changed
    assert inst.state().revision == 4


def test_rollback_goes_to_the_previous_revision_then_to_a_named_one(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst: Target = Installation(tmp_path)
    m1 = make_manifest(refs, V1, revision=1)
    m2 = make_manifest(refs, V2, revision=2)
    m3 = make_manifest(refs, V1, revision=3, salt="3")
    for m in (m1, m2, m3):
        inst.apply(m)
    back = inst.rollback()
    assert back.changed and back.manifest_hash == m2.manifest_hash
    assert back.previous_hash == m3.manifest_hash
    assert inst.state().components == V2
    named = inst.rollback(m3.manifest_hash)
    assert named.manifest_hash == m3.manifest_hash
    assert inst.rollback(m3.manifest_hash).changed is False


def test_rollback_refuses_what_is_not_on_disk(tmp_path: Path, refs: dict[str, ArtifactRef]) -> None:
    inst = Installation(tmp_path)
    with pytest.raises(ReleaseNotFound, match="no release applied"):
        inst.rollback()
    m1 = make_manifest(refs, V1)
    inst.apply(m1)
    with pytest.raises(ReleaseNotFound, match="older than revision 1"):
        inst.rollback()
    with pytest.raises(ReleaseNotFound, match="'deadbeef' is not on disk"):
        inst.rollback("deadbeef")
    with pytest.raises(ManifestRejected, match=r"'\.\./x'"):
        inst.rollback("../x")
    assert inst.state().manifest_hash == m1.manifest_hash


def test_only_the_last_n_releases_are_kept(tmp_path: Path, refs: dict[str, ArtifactRef]) -> None:
    inst = Installation(tmp_path, keep=3)
    applied = [make_manifest(refs, V1, revision=r, salt=str(r)) for r in range(1, 7)]
    for m in applied:
        inst.apply(m)
    on_disk = sorted(p.name for p in (tmp_path / "releases").iterdir())
    assert on_disk == sorted(m.manifest_hash for m in applied[-3:])
    assert inst.state().releases == [m.manifest_hash for m in reversed(applied[-3:])]


def test_a_checksum_mismatch_touches_nothing(tmp_path: Path, refs: dict[str, ArtifactRef]) -> None:
    inst = Installation(tmp_path)
    inst.apply(make_manifest(refs, V1))
    before = snapshot(tmp_path)
    bad = make_manifest(refs, V2, revision=2)
    spec = bad.components["worker"].model_copy(update={"sha256": "0" * 64})
    bad = bad.model_copy(update={"components": {**bad.components, "worker": spec}})
    with pytest.raises(ChecksumMismatch, match=r"expected 0{64}, got [0-9a-f]{64}"):
        inst.apply(bad)
    assert snapshot(tmp_path) == before
    assert list((tmp_path / "staging").iterdir()) == []
    assert inst.apply_log()[-1].outcome == "failed"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///nonexistent/api.tar.gz", "Artifact not found: 'file:///nonexistent/api.tar.gz'"),
        ("/nonexistent/api.tar.gz", "Artifact not found"),
        ("http://127.0.0.1:9/api.tar.gz", "Artifact unreachable: 'http://127.0.0.1:9/api.tar.gz'"),
        ("ftp://example.org/api.tar.gz", "Unsupported artifact URL 'ftp://example.org/api.tar.gz'"),
        ("relative/api.tar.gz", "Unsupported artifact URL 'relative/api.tar.gz'"),
    ],
)
def test_an_unreachable_artifact_is_a_permanent_error_touching_nothing(
    tmp_path: Path, refs: dict[str, ArtifactRef], url: str, message: str
) -> None:
    inst = Installation(tmp_path, fetch_timeout=2)
    inst.apply(make_manifest(refs, V1))
    before = snapshot(tmp_path)
    m = make_manifest(refs, V2, revision=2)
    spec = m.components["api"].model_copy(update={"url": url})
    m = m.model_copy(update={"components": {**m.components, "api": spec}})
    with pytest.raises(ArtifactError) as info:
        inst.apply(m)
    assert message in str(info.value)
    assert isinstance(info.value, PermanentTargetError)
    assert snapshot(tmp_path) == before


def _tar(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            data = b"x" * info.size if info.isfile() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 1
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


UNSAFE = {
    "absolute path": (_member("/tmp/evil"), "absolute path '/tmp/evil'"),
    "dot-dot": (_member("bin/../../evil"), "'bin/../../evil' contains '..'"),
    "symlink absolute": (_member("bin/x", tarfile.SYMTYPE, "/etc/passwd"), "'/etc/passwd'"),
    "symlink escaping": (_member("bin/x", tarfile.SYMTYPE, "../../.."), "leaves the release"),
    "hardlink escaping": (_member("h", tarfile.LNKTYPE, "../outside"), "leaves the release"),
    "device": (_member("dev", tarfile.CHRTYPE), "device or fifo"),
    "fifo": (_member("pipe", tarfile.FIFOTYPE), "device or fifo"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_archive_members_escaping_the_release_are_refused_touching_nothing(
    tmp_path: Path, refs: dict[str, ArtifactRef], case: str
) -> None:
    member, message = UNSAFE[case]
    archive = _tar(tmp_path / "evil.tar.gz", _member("VERSION"), member)
    root = tmp_path / "root"
    inst = Installation(root)
    inst.apply(make_manifest(refs, V1))
    before = snapshot(root)
    evil = Manifest.model_validate(
        {
            "instance": "acme-prod",
            "revision": 2,
            "manifest_hash": "e" * 64,
            "components": {
                "api": {"version": "6.6.6", "url": str(archive), "sha256": sha256_file(archive)}
            },
        }
    )
    with pytest.raises(UnsafeArchive) as info:
        inst.apply(evil)
    assert message in str(info.value)
    assert snapshot(root) == before
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_a_second_operation_while_one_holds_the_lock_is_busy(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(TargetBusy, match="busy") as info:
            inst.apply(make_manifest(refs, V1))
        assert isinstance(info.value, TransientTargetError)
        with pytest.raises(TargetBusy):
            inst.rollback()
    finally:
        os.close(fd)
    assert inst.apply(make_manifest(refs, V1)).changed


def test_health_runs_each_components_healthcheck(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    assert inst.health().healthy is False
    inst.apply(make_manifest(refs, V1))
    report = inst.health()
    assert report.healthy
    assert report.components["api"].detail == "exit 0: ok 1.0.0"
    inst.apply(make_manifest(refs, {"api": "9.9.9", "web": "1.0.0"}, revision=2))
    sick = inst.health()
    assert not sick.healthy
    assert not sick.components["api"].healthy and sick.components["web"].healthy
    assert "built unhealthy" in sick.components["api"].detail


def test_a_tampered_release_fails_its_health_check(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    inst.apply(make_manifest(refs, V1))
    (tmp_path / "current" / "web" / "VERSION").write_text("0.0.1\n")
    report = inst.health()
    assert not report.healthy
    assert "expected 1.0.0" in report.components["web"].detail


def test_recover_removes_leftovers_of_a_killed_apply(
    tmp_path: Path, refs: dict[str, ArtifactRef]
) -> None:
    inst = Installation(tmp_path)
    inst.apply(make_manifest(refs, V1))
    (tmp_path / "staging" / "abc.partial" / "api").mkdir(parents=True)
    os.symlink("releases/nowhere", tmp_path / ".current.123.456")
    inst.recover()
    assert list((tmp_path / "staging").iterdir()) == []
    assert not (tmp_path / ".current.123.456").is_symlink()
    assert inst.state().components == V1


def test_http_artifacts_without_an_agent_leave_no_connection_open(
    tmp_path: Path, refs: dict[str, ArtifactRef], artifact_server: str
) -> None:
    inst = Installation(tmp_path)
    m = make_manifest(refs, V2, base_url=artifact_server)
    assert inst.apply(m).changed
    assert inst.state().components == V2
    assert inst.health().healthy
    assert inst.http is None
