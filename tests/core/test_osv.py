"""Reading OSV records: real published records, OSV range semantics, severities, errors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from packaging.version import Version

from fleet.core.advisories import Advisory, Severity
from fleet.core.errors import InputError
from fleet.core.osv import (
    InvalidOSVRecord,
    UnmappedOSVPackage,
    advisories_from_osv,
    cvss3_base_score,
    normalize_package_name,
    osv_package_names,
    severity_from_score,
)
from tests.factories import OSV_COMPONENTS as COMPONENTS
from tests.factories import OSV_RECORDS as RECORDS


def _read(record_id: str, default: Severity | None = Severity.LOW) -> Advisory:
    [advisory] = advisories_from_osv(RECORDS[record_id], COMPONENTS, default_severity=default)
    return advisory


def _ecosystem_ranges(record: Mapping[str, Any]) -> Iterator[list[dict[str, str]]]:
    for entry in record["affected"]:
        if normalize_package_name(entry["package"]["name"]) not in COMPONENTS:
            continue
        for rng in entry.get("ranges", []):
            if rng["type"] == "ECOSYSTEM":
                yield rng["events"]


def _listed(record: Mapping[str, Any]) -> set[Version]:
    return {
        Version(v)
        for entry in record["affected"]
        if normalize_package_name(entry["package"]["name"]) in COMPONENTS
        for v in entry.get("versions", [])
    }


def _paired_oracle(record: Mapping[str, Any], version: Version) -> bool:
    """A second reading of the ranges, by pairs as written (every real record here
    lists each `introduced` right before its `fixed`/`last_affected`)."""
    if version in _listed(record):
        return True
    for events in _ecosystem_ranges(record):
        low: Version | None = None  # None: from the very first version
        is_open = False
        for event in events:
            [(kind, raw)] = event.items()
            if kind == "introduced":
                low, is_open = (None if raw == "0" else Version(raw)), True
            elif is_open:
                high = Version(raw)
                below = version <= high if kind == "last_affected" else version < high
                if (low is None or version >= low) and below:
                    return True
                is_open = False
        if is_open and (low is None or version >= low):
            return True
    return False


def _cases(kind: str) -> list[Any]:
    cases = []
    for record_id, record in RECORDS.items():
        if kind == "listed":
            versions = sorted(_listed(record))
        else:
            versions = sorted(
                {
                    Version(raw)
                    for events in _ecosystem_ranges(record)
                    for event in events
                    for k, raw in event.items()
                    if k == kind and raw != "0"
                }
            )
        cases += [pytest.param(record_id, v, id=f"{record_id}-{v}") for v in versions]
    return cases


def test_the_data_holds_enough_real_records() -> None:
    assert len(RECORDS) >= 20
    for record_id, record in RECORDS.items():
        assert record["id"] == record_id


# --- every real record, every version it names -------------------------------------------


@pytest.mark.parametrize(("record_id", "version"), _cases("listed"))
def test_listed_versions_are_affected(record_id: str, version: Version) -> None:
    assert _read(record_id).affects(version)


@pytest.mark.parametrize(("record_id", "version"), _cases("listed"))
def test_ranges_alone_cover_every_listed_version(record_id: str, version: Version) -> None:
    # The explicit list and the ranges of a published record agree: this checks
    # the range walk itself, without the list's help.
    advisory = _read(record_id)
    assert any(r.covers(version) for r in advisory.ranges)


@pytest.mark.parametrize(("record_id", "version"), _cases("fixed"))
def test_fixed_versions_follow_osv_semantics(record_id: str, version: Version) -> None:
    expected = _paired_oracle(RECORDS[record_id], version)
    assert _read(record_id).affects(version) is expected


@pytest.mark.parametrize(("record_id", "version"), _cases("fixed"))
def test_no_real_fixed_version_is_listed_or_reintroduced(record_id: str, version: Version) -> None:
    # Pins down what the oracle says for this data, so the test above is not vacuous.
    assert not _paired_oracle(RECORDS[record_id], version)


@pytest.mark.parametrize(("record_id", "version"), _cases("introduced"))
def test_introduced_versions_are_affected(record_id: str, version: Version) -> None:
    assert _read(record_id).affects(version)


@pytest.mark.parametrize(("record_id", "version"), _cases("last_affected"))
def test_last_affected_versions_are_affected(record_id: str, version: Version) -> None:
    advisory = _read(record_id)
    assert advisory.affects(version)
    assert not advisory.affects(Version(f"{version}.post1"))


def test_last_affected_case_is_present() -> None:
    assert _cases("last_affected")


# --- what each real record turns into ---------------------------------------------------------

# None: the record carries no severity, so the default (low here) applies.
EXPECTED_SEVERITY: dict[str, Severity | None] = {
    "GHSA-2g68-c3qc-8985": Severity.HIGH,
    "GHSA-34jh-p97f-mpxf": Severity.MEDIUM,
    "GHSA-8vj2-vxx3-667w": Severity.CRITICAL,
    "GHSA-j8r2-6x86-q33q": Severity.MEDIUM,
    "GHSA-m2qf-hxjv-5gpq": Severity.HIGH,
    "GHSA-p64x-8rxx-wf6q": Severity.CRITICAL,
    "GHSA-v845-jxx5-vc9f": Severity.MEDIUM,
    "GHSA-wj6h-64fc-37mp": Severity.HIGH,
    "GHSA-x4qr-2fvf-3mr5": Severity.HIGH,
    "PYSEC-2019-217": None,
    "PYSEC-2021-108": None,
    "PYSEC-2021-142": None,
    "PYSEC-2021-66": None,
    "PYSEC-2022-213": None,
    "PYSEC-2023-175": None,
    "PYSEC-2023-212": Severity.MEDIUM,  # CVSS 3.1 vector only: 4.2
    "PYSEC-2023-221": Severity.HIGH,  # CVSS 3.1 vector only: 7.5
    "PYSEC-2023-254": Severity.HIGH,  # CVSS 3.1 vector only: 7.5
    "PYSEC-2023-62": None,
    "PYSEC-2023-74": None,
}


def test_every_record_has_an_expected_severity() -> None:
    assert set(EXPECTED_SEVERITY) == set(RECORDS)


@pytest.mark.parametrize(("record_id", "severity"), sorted(EXPECTED_SEVERITY.items()))
def test_severity_of_real_records(record_id: str, severity: Severity | None) -> None:
    assert _read(record_id, default=Severity.LOW).severity == (severity or Severity.LOW)
    if severity is None:
        with pytest.raises(InvalidOSVRecord, match=rf"{record_id}: no severity"):
            _read(record_id, default=None)
    else:
        assert _read(record_id, default=None).severity is severity


@pytest.mark.parametrize("record_id", sorted(RECORDS))
def test_identity_fields_are_kept(record_id: str) -> None:
    record = RECORDS[record_id]
    advisory = _read(record_id)
    assert advisory.id == record_id
    assert advisory.aliases == tuple(record.get("aliases", []))
    stamp = record.get("published") or record["modified"]
    assert advisory.published_at == datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert advisory.published_at.utcoffset() is not None
    assert advisory.summary
    if "summary" in record:
        assert advisory.summary == record["summary"].strip()
    else:
        assert record["details"].startswith(advisory.summary)


def test_published_is_an_aware_utc_datetime() -> None:
    advisory = _read("PYSEC-2023-212")
    assert advisory.published_at == datetime(2023, 10, 17, 20, 15, tzinfo=UTC)


def test_a_record_without_published_is_dated_by_modified() -> None:
    assert "published" not in RECORDS["PYSEC-2023-175"]
    assert _read("PYSEC-2023-175").published_at == datetime(2023, 9, 25, 17, 12, 36, tzinfo=UTC)


def test_ghsa_release_line_entries_are_merged() -> None:
    advisory = _read("GHSA-34jh-p97f-mpxf")
    assert advisory.component == "http-pool"
    assert len(advisory.ranges) == 2
    assert advisory.fixed_versions() == [Version("1.26.19"), Version("2.2.2")]
    assert advisory.affects(Version("1.26.18"))
    assert not advisory.affects(Version("1.26.19"))
    assert advisory.affects(Version("2.0.0"))
    assert advisory.affects(Version("2.2.1"))
    assert not advisory.affects(Version("2.2.2"))


def test_git_ranges_are_kept_verbatim_and_affect_nothing() -> None:
    advisory = _read("PYSEC-2021-108")
    git, ecosystem = advisory.ranges
    assert git.type == "GIT"
    assert git.raw["repo"] == "https://github.com/urllib3/urllib3"
    assert git.raw == RECORDS["PYSEC-2021-108"]["affected"][0]["ranges"][0]
    assert not any(git.covers(Version(v)) for v in ("0", "1.26.4", "99"))
    assert ecosystem.covers(Version("1.26.4"))


def test_other_ecosystems_next_to_a_mapped_package_are_ignored() -> None:
    advisory = _read("GHSA-x4qr-2fvf-3mr5")
    assert advisory.component == "crypto"
    assert len(advisory.ranges) == 1
    assert advisory.affects(Version("39.0.0"))
    assert not advisory.affects(Version("0.8"))
    assert not advisory.affects(Version("111.0.0"))


def test_a_list_of_records_and_an_api_answer() -> None:
    records = list(RECORDS.values())
    advisories = advisories_from_osv(records, COMPONENTS, default_severity=Severity.LOW)
    assert [a.id for a in advisories] == list(RECORDS)
    wrapped = advisories_from_osv({"vulns": records}, COMPONENTS, default_severity=Severity.LOW)
    assert wrapped == advisories


def test_package_names_of_real_records() -> None:
    names = osv_package_names(list(RECORDS.values()))
    assert {"Werkzeug", "werkzeug", "Pillow", "pillow", "openssl-src", "ecdsa"} <= set(names)
    assert len(names) == len(set(names))
    assert osv_package_names(RECORDS["GHSA-x4qr-2fvf-3mr5"]) == ["cryptography", "openssl-src"]


# --- OSV semantics, by hand -------------------------------------------------------------------


def _record(*affected: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": "TEST-1",
        "published": "2026-11-25T08:00:00Z",
        "database_specific": {"severity": "HIGH"},
        "affected": list(affected),
        **fields,
    }


def _entry(*ranges: list[dict[str, str]], name: str = "api", **fields: Any) -> dict[str, Any]:
    return {
        "package": {"ecosystem": "PyPI", "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": events} for events in ranges],
        **fields,
    }


SEMANTICS = [
    # introduced "0" means from the very first version, pre-releases included
    ([[{"introduced": "0"}, {"fixed": "1.2"}]], [], "0.0.0b0", True),
    ([[{"introduced": "0"}, {"fixed": "1.2"}]], [], "0.0.0.dev1", True),
    ([[{"introduced": "0"}, {"fixed": "1.2"}]], [], "1.2rc1", True),
    ([[{"introduced": "0"}, {"fixed": "1.2"}]], [], "1.2", False),
    ([[{"introduced": "0"}]], [], "99.0", True),
    # introduced is inclusive, fixed exclusive
    ([[{"introduced": "1.0"}, {"fixed": "1.2"}]], [], "0.9", False),
    ([[{"introduced": "1.0"}, {"fixed": "1.2"}]], [], "1.0", True),
    ([[{"introduced": "1.0"}, {"fixed": "1.2"}]], [], "1.0rc1", False),
    ([[{"introduced": "1.0"}, {"fixed": "1.2"}]], [], "1.1.9", True),
    # last_affected is inclusive
    ([[{"introduced": "1.0"}, {"last_affected": "1.4"}]], [], "1.4", True),
    ([[{"introduced": "1.0"}, {"last_affected": "1.4"}]], [], "1.4.0", True),
    ([[{"introduced": "1.0"}, {"last_affected": "1.4"}]], [], "1.4.post1", False),
    ([[{"introduced": "1.0"}, {"last_affected": "1.4"}]], [], "1.4.1", False),
    # limit is an exclusive cap on the whole range
    ([[{"introduced": "0"}, {"limit": "2.0"}]], [], "1.9", True),
    ([[{"introduced": "0"}, {"limit": "2.0"}]], [], "2.0", False),
    ([[{"introduced": "1.0"}, {"limit": "1.5"}]], [], "1.6", False),
    ([[{"introduced": "1.0"}, {"fixed": "3.0"}, {"limit": "2.0"}]], [], "2.5", False),
    ([[{"introduced": "1.0"}, {"limit": "*"}]], [], "7.0", True),
    # several pairs in one range, in any order
    (
        [[{"introduced": "2.0.0"}, {"fixed": "2.0.7"}, {"introduced": "0"}, {"fixed": "1.26.18"}]],
        [],
        "1.26.17",
        True,
    ),
    (
        [[{"introduced": "2.0.0"}, {"fixed": "2.0.7"}, {"introduced": "0"}, {"fixed": "1.26.18"}]],
        [],
        "1.26.18",
        False,
    ),
    (
        [[{"introduced": "2.0.0"}, {"fixed": "2.0.7"}, {"introduced": "0"}, {"fixed": "1.26.18"}]],
        [],
        "1.99",
        False,
    ),
    (
        [[{"introduced": "2.0.0"}, {"fixed": "2.0.7"}, {"introduced": "0"}, {"fixed": "1.26.18"}]],
        [],
        "2.0.6",
        True,
    ),
    (
        [[{"introduced": "2.0.0"}, {"fixed": "2.0.7"}, {"introduced": "0"}, {"fixed": "1.26.18"}]],
        [],
        "2.0.7",
        False,
    ),
    # a fixed version reintroduced by another range is affected
    (
        [[{"introduced": "1.0"}, {"fixed": "1.1"}], [{"introduced": "1.1"}, {"fixed": "1.3"}]],
        [],
        "1.1",
        True,
    ),
    # several ranges: any one is enough
    (
        [[{"introduced": "1.0"}, {"fixed": "1.1"}], [{"introduced": "2.0"}, {"fixed": "2.1"}]],
        [],
        "2.0.5",
        True,
    ),
    (
        [[{"introduced": "1.0"}, {"fixed": "1.1"}], [{"introduced": "2.0"}, {"fixed": "2.1"}]],
        [],
        "1.5",
        False,
    ),
    # the explicit list adds versions, even a range's fixed one
    ([], ["1.2.3"], "1.2.3", True),
    ([], ["1.2.3"], "1.2.4", False),
    ([[{"introduced": "1.0"}, {"fixed": "1.1"}]], ["1.1"], "1.1", True),
    # entries that are not PEP 440 can never match and are skipped
    ([], ["2004d", "1.0"], "1.0", True),
]


@pytest.mark.parametrize(("ranges", "versions", "version", "expected"), SEMANTICS)
def test_osv_semantics(
    ranges: list[list[dict[str, str]]], versions: list[str], version: str, expected: bool
) -> None:
    record = _record(_entry(*ranges, versions=versions))
    [advisory] = advisories_from_osv(record, {"api": "api"})
    assert advisory.affects(Version(version)) is expected


def test_git_only_ranges_affect_nothing() -> None:
    entry = {
        "package": {"ecosystem": "PyPI", "name": "api"},
        "ranges": [
            {
                "type": "GIT",
                "repo": "https://example.com/api.git",
                "events": [
                    {"introduced": "0"},
                    {"fixed": "4e98d57809dacab1cbe625fddeec1a290c478ea9"},
                ],
            }
        ],
    }
    [advisory] = advisories_from_osv(_record(entry), {"api": "api"})
    assert not any(advisory.affects(Version(v)) for v in ("0", "0.0.0b0", "1.0", "99"))
    assert advisory.ranges[0].raw["repo"] == "https://example.com/api.git"


def test_range_database_specific_is_kept_raw() -> None:
    rng = {
        "type": "ECOSYSTEM",
        "events": [{"introduced": "0"}, {"fixed": "1.0"}],
        "database_specific": {"source": "example"},
    }
    entry = {"package": {"name": "api"}, "ranges": [rng]}
    [advisory] = advisories_from_osv(_record(entry), {"api": "api"})
    assert advisory.ranges[0].raw == rng


def test_entries_for_one_component_are_merged() -> None:
    record = _record(
        _entry([{"introduced": "1.0"}, {"fixed": "1.1"}], versions=["1.0"]),
        _entry([{"introduced": "2.0"}, {"fixed": "2.1"}], name="API", versions=["2.0"]),
        _entry([{"introduced": "1.0"}, {"fixed": "1.1"}], name="api"),
    )
    [advisory] = advisories_from_osv(record, {"api": "api"})
    assert len(advisory.ranges) == 2  # the repeated range is kept once
    assert advisory.versions == {Version("1.0"), Version("2.0")}
    assert advisory.fixed_versions() == [Version("1.1"), Version("2.1")]


def test_one_record_for_two_components() -> None:
    record = _record(
        _entry([{"introduced": "0"}, {"fixed": "1.0"}], name="api"),
        _entry([{"introduced": "0"}, {"fixed": "2.0"}], name="worker-lib"),
        _entry([{"introduced": "0"}, {"fixed": "3.0"}], name="not-ours"),
    )
    advisories = advisories_from_osv(record, {"api": "api", "worker_lib": "worker"})
    assert [(a.component, a.fixed_versions()) for a in advisories] == [
        ("api", [Version("1.0")]),
        ("worker", [Version("2.0")]),
    ]


@pytest.mark.parametrize(
    ("in_record", "in_map"),
    [
        ("Werkzeug", "werkzeug"),
        ("werkzeug", "Werkzeug"),
        ("PyYAML", "pyyaml"),
        ("zope.interface", "zope-interface"),
        ("jinja2_ext", "Jinja2.Ext"),
        ("a-_.b", "a_b"),
    ],
)
def test_package_names_compare_the_pypi_way(in_record: str, in_map: str) -> None:
    record = _record(_entry([{"introduced": "0"}], name=in_record))
    [advisory] = advisories_from_osv(record, {in_map: "api"})
    assert advisory.component == "api"


def test_withdrawn_records_yield_nothing() -> None:
    record = _record(_entry([{"introduced": "0"}]), withdrawn="2026-01-01T00:00:00Z")
    assert advisories_from_osv(record, {"api": "api"}) == []


def test_summary_falls_back_to_the_first_line_of_details() -> None:
    record = _record(_entry([{"introduced": "0"}]), details="\n  First line.  \nSecond line.")
    [advisory] = advisories_from_osv(record, {"api": "api"})
    assert advisory.summary == "First line."


# --- severities --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "entry_fields", "default", "expected"),
    [
        ({"database_specific": {"severity": "CRITICAL"}}, {}, None, Severity.CRITICAL),
        ({"database_specific": {"severity": "MODERATE"}}, {}, None, Severity.MEDIUM),
        ({"database_specific": {"severity": "MEDIUM"}}, {}, None, Severity.MEDIUM),
        ({"database_specific": {"severity": "low"}}, {}, None, Severity.LOW),
        # the database's word wins over a vector
        (
            {
                "database_specific": {"severity": "LOW"},
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
                ],
            },
            {},
            None,
            Severity.LOW,
        ),
        # the entry's word wins over the record's
        (
            {"database_specific": {"severity": "LOW"}},
            {"database_specific": {"severity": "HIGH"}},
            None,
            Severity.HIGH,
        ),
        # a CVSS v3 vector, record level or entry level; the highest one counts
        (
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"},
                    {"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"},
                ]
            },
            {},
            Severity.LOW,
            Severity.HIGH,
        ),
        (
            {},
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"}
                ]
            },
            None,
            Severity.MEDIUM,
        ),
        # an unknown database word falls through to the vector
        (
            {
                "database_specific": {"severity": "UNKNOWN"},
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
                ],
            },
            {},
            None,
            Severity.CRITICAL,
        ),
        # CVSS v4 vectors are not scored: the default applies
        (
            {
                "severity": [
                    {
                        "type": "CVSS_V4",
                        "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                    }
                ]
            },
            {},
            Severity.MEDIUM,
            Severity.MEDIUM,
        ),
        ({}, {}, Severity.LOW, Severity.LOW),
    ],
)
def test_severity_sources(
    fields: dict[str, Any],
    entry_fields: dict[str, Any],
    default: Severity | None,
    expected: Severity,
) -> None:
    record = {
        "id": "TEST-1",
        "published": "2026-11-25T08:00:00Z",
        "affected": [_entry([{"introduced": "0"}], **entry_fields)],
        **fields,
    }
    [advisory] = advisories_from_osv(record, {"api": "api"}, default_severity=default)
    assert advisory.severity is expected


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        # the vectors of the records in tests/data/osv and their published scores
        ("CVSS:3.1/AV:A/AC:H/PR:H/UI:N/S:U/C:H/I:N/A:N", 4.2),  # CVE-2023-45803
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N", 6.1),  # CVE-2023-32681
        ("CVSS:3.1/AV:N/AC:H/PR:H/UI:N/S:U/C:H/I:N/A:N", 4.4),  # CVE-2024-37891
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),  # CVE-2023-49083
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.5),  # CVE-2024-34069
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", 7.4),  # CVE-2024-23342
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H", 7.4),  # CVE-2023-0286
        # temporal metrics do not change the base score
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C", 9.8),
    ],
)
def test_cvss3_base_score(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


@pytest.mark.parametrize(
    "vector",
    [
        "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AV:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A",
    ],
)
def test_invalid_cvss3_vectors(vector: str) -> None:
    with pytest.raises(InputError, match="Invalid CVSS v3 vector"):
        cvss3_base_score(vector)


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (10.0, Severity.CRITICAL),
        (9.0, Severity.CRITICAL),
        (8.9, Severity.HIGH),
        (7.0, Severity.HIGH),
        (6.9, Severity.MEDIUM),
        (4.0, Severity.MEDIUM),
        (3.9, Severity.LOW),
        (0.0, Severity.LOW),
    ],
)
def test_severity_from_score(score: float, severity: Severity) -> None:
    assert severity_from_score(score) is severity


# --- errors --------------------------------------------------------------------------------------


def test_unmapped_package_names_package_record_and_fix() -> None:
    record = _record(_entry([{"introduced": "0"}], name="django"), id="PYSEC-2023-1")
    with pytest.raises(UnmappedOSVPackage) as info:
        advisories_from_osv(record, {"flask": "app"})
    assert str(info.value) == (
        "unknown component for OSV package 'django' in PYSEC-2023-1; "
        "map it with --component-map django=COMPONENT"
    )
    assert info.value.record_id == "PYSEC-2023-1"
    assert info.value.package_names == ["django"]
    assert isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)


def test_unmapped_real_record_names_every_package() -> None:
    with pytest.raises(UnmappedOSVPackage, match=r"'cryptography', 'openssl-src' in GHSA-x4qr"):
        advisories_from_osv(RECORDS["GHSA-x4qr-2fvf-3mr5"], {"django": "web"})


def test_one_unmapped_record_in_a_list_fails_the_list() -> None:
    records = [RECORDS["GHSA-p64x-8rxx-wf6q"], RECORDS["GHSA-wj6h-64fc-37mp"]]
    with pytest.raises(UnmappedOSVPackage, match="'ecdsa' in GHSA-wj6h-64fc-37mp"):
        advisories_from_osv(records, {"django": "web"})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            _record(_entry([{"introduced": "1.0", "fixed": "2.0"}])),
            r"TEST-1: affected\[0\] \(api\): Invalid OSV event",
        ),
        (_record(_entry([{"introduced": "1.0"}, {"fixd": "2.0"}])), r"TEST-1: .*Invalid OSV event"),
        (_record(_entry([{"fixed": "2.0"}])), r"TEST-1: .*no 'introduced' event"),
        (_record(_entry([{"introduced": "0"}, {"fixed": "two"}])), r"TEST-1: .*'two'"),
        (_record(_entry([])), r"TEST-1: .*needs a list of events"),
        (
            _record({"package": {"name": "api"}, "ranges": [{"type": "RPM", "events": []}]}),
            r"TEST-1: .*range type: 'RPM'",
        ),
        (_record({"package": {"name": "api"}, "versions": "1.0"}), r"TEST-1: .*'versions'"),
        (_record({"package": {}}), r"TEST-1: affected\[0\].package has no 'name'"),
        (_record(), r"TEST-1: no affected package"),
        (_record(affected=None), r"TEST-1: 'affected' must be a list"),
        (_record(_entry([{"introduced": "0"}]), published="yesterday"), r"TEST-1: .*RFC 3339"),
        (
            _record(_entry([{"introduced": "0"}]), published="2026-11-25T08:00:00"),
            r"TEST-1: .*no time zone",
        ),
        (
            {"id": "TEST-1", "affected": [_entry([{"introduced": "0"}])]},
            r"TEST-1: no 'published' or 'modified'",
        ),
        (
            _record(
                _entry([{"introduced": "0"}]),
                database_specific={},
                severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}],
            ),
            r"TEST-1: Invalid CVSS v3 vector",
        ),
        ({"affected": [_entry([{"introduced": "0"}])]}, r"missing 'id'"),
    ],
)
def test_malformed_records(record: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOSVRecord, match=message):
        advisories_from_osv(record, {"api": "api"}, default_severity=Severity.LOW)


def test_no_severity_names_the_record() -> None:
    record = _record(_entry([{"introduced": "0"}]), database_specific={}, id="PYSEC-2023-175")
    with pytest.raises(InvalidOSVRecord, match="PYSEC-2023-175: no severity"):
        advisories_from_osv(record, {"api": "api"})


@pytest.mark.parametrize("data", ["PYSEC-1", 42, [42]])
def test_data_that_is_not_records(data: Any) -> None:
    with pytest.raises(InvalidOSVRecord):
        advisories_from_osv(data, {"api": "api"})


def test_component_map_is_checked() -> None:
    record = _record(_entry([{"introduced": "0"}]))
    with pytest.raises(InputError, match="maps to both 'a' and 'b'"):
        advisories_from_osv(record, {"Api": "a", "api": "b"})
    with pytest.raises(InputError, match="Invalid component name: 'API'"):
        advisories_from_osv(record, {"api": "API"})
