"""Local servers for the diagnostics tests (loopback only)."""

import pytest
from edge_servers import BlackHole, HttpServer, Silent, ZmtpListener, closed_port, make_ca_and_cert

PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    # never let requests wander off loopback through an inherited proxy
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def zmtp_fast():
    srv = ZmtpListener(0.0)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def zmtp_slow():
    srv = ZmtpListener(0.15)  # 150 ms: fair with default thresholds
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def zmtp_very_slow():
    srv = ZmtpListener(0.4)  # 400 ms: poor with default thresholds
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def silent():
    srv = Silent()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def black_hole():
    srv = BlackHole()
    yield srv
    srv.close()


@pytest.fixture
def closed():
    return closed_port()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_ca_and_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def http_server():
    srv = HttpServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def https_server(tls_files):
    _ca, cert, key = tls_files
    srv = HttpServer(cert, key)
    yield srv
    srv.close()
