"""TLS to a real server with a self-signed certificate: `sslmode` in the URL is honoured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.errors import ConfigurationError
from exportsathi_db.servers import TemporaryCluster
from tests.reliability.support import connect
from tests.servers import enable_tls, missing, self_signed_certificate, tls_bin_dir

SSL_IN_USE = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[TemporaryCluster, Path]]:
    """A throwaway server with `ssl = on` and a certificate made here; (server, certificate)."""
    bin_dir = tls_bin_dir()
    if bin_dir is None:
        missing("no PostgreSQL server built with OpenSSL (apt-get install postgresql-15)")
    with TemporaryCluster(bin_dir=bin_dir) as server:
        yield server, enable_tls(server)


@pytest.fixture
def url(tls_server: tuple[TemporaryCluster, Path], monkeypatch: pytest.MonkeyPatch) -> URL:
    for name in ("PGSSLROOTCERT", "PGSSLMODE", "PGSSLCERT", "PGSSLKEY"):
        monkeypatch.delenv(name, raising=False)
    return tls_server[0].url()


async def _ssl_in_use(url: URL) -> bool:
    db = connect(url)
    try:
        async with db.session_scope() as session:
            return bool((await session.execute(SSL_IN_USE)).scalar_one())
    finally:
        await db.dispose()


async def test_sslmode_require_uses_tls(url: URL) -> None:
    assert await _ssl_in_use(url.set(query={"sslmode": "require"}))


async def test_sslmode_disable_does_not(url: URL) -> None:
    assert not await _ssl_in_use(url.set(query={"sslmode": "disable"}))


async def test_verify_full_refuses_an_untrusted_certificate(
    url: URL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other, _ = self_signed_certificate(tmp_path, "some-other-root")  # not the server's
    monkeypatch.setenv("PGSSLROOTCERT", str(other))
    with pytest.raises(ConfigurationError, match="certificate verify failed: self-signed"):
        await _ssl_in_use(url.set(query={"sslmode": "verify-full"}))


async def test_verify_full_without_a_root_certificate_is_a_configuration_error(
    url: URL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt, no PGSSLROOTCERT
    with pytest.raises(ConfigurationError, match="root certificate file") as info:
        await _ssl_in_use(url.set(query={"sslmode": "verify-full"}))
    assert not info.value.retryable


async def test_verify_full_accepts_the_certificate_once_trusted(
    url: URL, tls_server: tuple[TemporaryCluster, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_server[1]))
    assert await _ssl_in_use(url.set(query={"sslmode": "verify-full"}))


async def test_sslmode_require_against_a_server_without_tls(own_url: URL) -> None:
    """`own_url`'s server has no TLS: a configuration error, said as such, not retryable (not
    "cannot connect"). asyncpg's own ConnectionError stays the cause."""
    with pytest.raises(
        ConfigurationError, match=r"does not support TLS \(SSL\) connections"
    ) as info:
        await _ssl_in_use(own_url.set(query={"sslmode": "require"}))
    assert not info.value.retryable
    assert isinstance(info.value.__cause__, ConnectionError)
