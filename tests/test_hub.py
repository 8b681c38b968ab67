"""The hub check: an HTTP request through the proxy from the environment, failing fast when nothing answers.

Every test runs with no internet: the "hub" is either a name under ``.invalid`` (never resolves), a closed local port,
or a local server; the proxy is a local server too.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from embedft.hub import hub_reachable

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and records its request line; refuses CONNECT with 403."""

    status = 200

    def answer(self) -> None:
        self.server.request_lines.append(self.requestline)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = answer

    def do_CONNECT(self) -> None:
        self.server.request_lines.append(self.requestline)
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(status: int) -> Iterator[ThreadingHTTPServer]:
    handler = type("Handler", (Recorder,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.request_lines = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def proxy() -> Iterator[ThreadingHTTPServer]:
    """A local HTTP proxy that answers 200 to any request, absolute-URI ones included."""
    yield from serve(200)


@pytest.fixture
def failing_server() -> Iterator[ThreadingHTTPServer]:
    """A local web server that answers 503 to everything."""
    yield from serve(503)


@pytest.fixture
def online(monkeypatch) -> pytest.MonkeyPatch:
    """Offline mode off (conftest turns it on for the session) and no proxy variables, in either case."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable.lower(), raising=False)
    return monkeypatch


def use_proxy(monkeypatch: pytest.MonkeyPatch, server: ThreadingHTTPServer, *schemes: str) -> None:
    for scheme in schemes:
        for variable in (f"{scheme.upper()}_PROXY", f"{scheme}_proxy"):
            monkeypatch.setenv(variable, f"http://127.0.0.1:{server.server_port}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_mode_is_unreachable_without_a_request(online, failing_server):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{failing_server.server_port}")
    online.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
    assert failing_server.request_lines == []


def test_goes_through_the_proxy_and_fails_fast_without_it(online, proxy):
    online.setenv("HF_ENDPOINT", "http://hub.invalid")
    use_proxy(online, proxy, "http")
    assert hub_reachable() is True
    assert [line.split()[:2] for line in proxy.request_lines] == [["HEAD", "http://hub.invalid/"]]

    for variable in ("HTTP_PROXY", "http_proxy"):
        online.delenv(variable)
    started = time.perf_counter()
    assert hub_reachable(timeout=2) is False
    assert time.perf_counter() - started < 10
    assert len(proxy.request_lines) == 1


def test_proxy_set_after_the_hub_built_its_shared_client(online, proxy):
    # huggingface_hub's shared client reads the proxy variables once; the check must not depend on when that was.
    from huggingface_hub import get_session

    shared = get_session()
    online.setenv("HF_ENDPOINT", "http://hub.invalid")
    use_proxy(online, proxy, "http")
    assert hub_reachable() is True
    assert len(proxy.request_lines) == 1
    assert get_session() is shared and not shared.is_closed


def test_all_proxy_is_honoured(online, proxy):
    online.setenv("HF_ENDPOINT", "http://hub.invalid")
    use_proxy(online, proxy, "all")
    assert hub_reachable() is True
    assert proxy.request_lines[0].split()[1] == "http://hub.invalid/"


def test_no_proxy_bypasses_the_proxy(online, proxy):
    online.setenv("HF_ENDPOINT", "http://hub.invalid")
    use_proxy(online, proxy, "http")
    online.setenv("NO_PROXY", "hub.invalid")
    online.setenv("no_proxy", "hub.invalid")
    assert hub_reachable(timeout=2) is False
    assert proxy.request_lines == []


def test_https_endpoint_tunnels_through_the_proxy_and_a_refused_tunnel_is_unreachable(online, proxy):
    online.setenv("HF_ENDPOINT", "https://hub.invalid")
    use_proxy(online, proxy, "https")
    assert hub_reachable(timeout=2) is False
    assert [line.split()[:2] for line in proxy.request_lines] == [["CONNECT", "hub.invalid:443"]]


def test_an_error_status_still_means_reachable(online, failing_server):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{failing_server.server_port}/")
    assert hub_reachable() is True
    assert [line.split()[:2] for line in failing_server.request_lines] == [["HEAD", "/"]]


def test_closed_port_is_unreachable_fast(online):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    started = time.perf_counter()
    assert hub_reachable() is False
    assert time.perf_counter() - started < 3


def test_unresponsive_server_times_out(online):
    # Accepts the connection but never answers: the read timeout must end the check.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.perf_counter()
        assert hub_reachable(timeout=0.5) is False
        assert time.perf_counter() - started < 5


def test_unusable_proxy_setting_is_unreachable(online):
    online.setenv("HF_ENDPOINT", "http://hub.invalid")
    online.setenv("HTTP_PROXY", "ftp://127.0.0.1:1")
    online.setenv("http_proxy", "ftp://127.0.0.1:1")
    assert hub_reachable(timeout=1) is False


def test_a_static_model_of_a_hub_model_keeps_the_hub_online(monkeypatch):
    from embedft.hub import OFFLINE_VARIABLES, use_offline_mode

    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert not use_offline_mode(["packaged:construction-faq", "static:sentence-transformers/all-MiniLM-L6-v2"])
    assert "HF_HUB_OFFLINE" not in os.environ
    assert use_offline_mode(["packaged:construction-faq", "static:packaged:all-MiniLM-L6-v2"])
