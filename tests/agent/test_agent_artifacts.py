"""`fleet artifacts build`: real demo artifacts for a fleet file, their sha256 written into it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from fleet.agent.installation import Installation
from fleet.agent.models import Manifest
from fleet.artifacts import artifact_path, build_demo_artifact
from fleet.cli.main import main
from fleet.core.errors import InvalidName
from tests.agent.support import ROOT

EXAMPLE = ROOT / "examples" / "fleet.yaml"


def test_build_writes_artifacts_and_their_sha256_into_the_fleet_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    shutil.copy(EXAMPLE, fleet_file)
    store = tmp_path / "store"
    assert main(["artifacts", "build", str(fleet_file), "--out", str(store)]) == 0
    document = yaml.safe_load(fleet_file.read_text())
    original = yaml.safe_load(EXAMPLE.read_text())
    assert len(document["versions"]) == len(original["versions"])
    for entry in document["versions"]:
        path = Path(urlsplit(entry["artifact"]["url"]).path)
        assert path == artifact_path(store, entry["component"], str(entry["version"])).absolute()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["artifact"]["sha256"]
    assert {k: v for k, v in document.items() if k != "versions"} == {
        k: v for k, v in original.items() if k != "versions"
    }
    for new, old in zip(document["versions"], original["versions"], strict=True):
        assert {k: v for k, v in new.items() if k != "artifact"} == {
            k: v for k, v in old.items() if k != "artifact"
        }
    assert f"sha256 recorded in {fleet_file}" in capsys.readouterr().out
    assert main(["validate", str(fleet_file)]) == 0

    # Rebuilding gives the same bytes: the recorded sha256 stays right.
    before = fleet_file.read_text()
    assert main(["artifacts", "build", str(fleet_file), "--out", str(store)]) == 0
    assert fleet_file.read_text() == before

    # The demo fleet deploys real bytes.
    first = document["versions"][0]
    manifest = Manifest.model_validate(
        {
            "instance": "acme-prod",
            "revision": 1,
            "manifest_hash": "1" * 64,
            "components": {
                first["component"]: {"version": str(first["version"]), **first["artifact"]}
            },
        }
    )
    installation = Installation(tmp_path / "instance")
    installation.apply(manifest)
    assert installation.health().raise_for_health().healthy


def test_a_json_fleet_file_stays_json(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.json"
    doc = {"format": 1, "components": ["api"], "versions": [{"component": "api", "version": "1.2"}]}
    fleet_file.write_text(json.dumps(doc))
    assert main(["artifacts", "build", str(fleet_file), "--out", str(tmp_path / "s")]) == 0
    written = json.loads(fleet_file.read_text())
    assert written["versions"][0]["artifact"]["url"].endswith("/api/1.2/api-1.2.tar.gz")


@pytest.mark.parametrize(
    ("entry", "quoted"),
    [
        ({"component": "../api", "version": "1.0"}, "'../api'"),
        ({"component": "api", "version": "../../1.0"}, "'../../1.0'"),
        ({"component": "api"}, "versions[0]: expected a mapping with component and version"),
    ],
)
def test_bad_entries_are_refused_naming_them_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: dict[str, str], quoted: str
) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({"format": 1, "versions": [entry]}))
    before = fleet_file.read_text()
    assert main(["artifacts", "build", str(fleet_file), "--out", str(tmp_path / "s")]) == 2
    assert quoted in capsys.readouterr().err
    assert fleet_file.read_text() == before
    assert not (tmp_path / "s").exists()


def test_a_missing_fleet_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["artifacts", "build", str(missing), "--out", str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_artifact_paths_refuse_unsafe_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidName, match="'Api'"):
        build_demo_artifact(tmp_path, "Api", "1.0")
