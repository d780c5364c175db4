"""Prefect's clients share one TLS context per process and per TLS settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import (
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    temporary_settings,
)

import tasks  # noqa: F401  (importing the tasks shares the context)
from tasks._tls import prefect_tls_context, share_tls_context

API = "https://prefect.example.invalid/api"


def _context(client: PrefectClient | SyncPrefectClient) -> ssl.SSLContext:
    pool = client._client._transport._pool  # type: ignore[union-attr]
    context = pool._ssl_context
    assert isinstance(context, ssl.SSLContext)
    return context


@pytest.mark.parametrize("cls", [PrefectClient, SyncPrefectClient])
def test_clients_without_verify_share_one_verifying_context(cls: type) -> None:
    first, second = cls(API), cls(API)
    assert _context(first) is _context(second) is prefect_tls_context()
    assert _context(first).verify_mode is ssl.CERT_REQUIRED
    assert _context(first).check_hostname


def test_sharing_twice_wraps_once() -> None:
    before = PrefectClient.__init__
    share_tls_context()
    assert PrefectClient.__init__ is before


def test_a_callers_own_context_stands() -> None:
    own = ssl.create_default_context()
    client = PrefectClient(API, httpx_settings={"verify": own})
    assert _context(client) is own


def test_insecure_setting_gives_a_shared_unverified_context() -> None:
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        first, second = PrefectClient(API), SyncPrefectClient(API)
        assert _context(first) is _context(second)
        assert _context(first).verify_mode is ssl.CERT_NONE
        assert not _context(first).check_hostname
    assert _context(PrefectClient(API)).verify_mode is ssl.CERT_REQUIRED


def test_cert_file_setting_is_the_trust_store(tmp_path: Path) -> None:
    # A store holding one authority: the shared context trusts that one only.
    bundle = Path(certifi.where()).read_text()
    first = bundle[: bundle.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    store = tmp_path / "ca.pem"
    store.write_text(first[first.index("-----BEGIN CERTIFICATE-----") :] + "\n")
    with temporary_settings({PREFECT_API_SSL_CERT_FILE: str(store)}):
        context = _context(PrefectClient(API))
        assert context.cert_store_stats()["x509_ca"] == 1
    default = _context(PrefectClient(API))
    assert default is not context
    assert default.cert_store_stats()["x509_ca"] > 1
