"""checks.factory_client against a real HTTP server (a tiny Image Factory stand-in in a thread)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest

from checks.factory_client import FactoryError, post_schematic, register_schematic
from checks.schematic import nvidia_schematic

SCHEMATIC_YAML, SCHEMATIC_ID = nvidia_schematic("production")


class _Factory(BaseHTTPRequestHandler):
    mode = "ok"
    received: list[tuple[str, str, str]] = []

    def log_message(self, *_args: object) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        type(self).received.append((self.path, self.headers.get("Content-Type", ""), body))
        mode = type(self).mode
        if mode == "slow":
            time.sleep(1.0)
        if mode == "error":
            self._send(500, b"internal error: storage unavailable\n", "text/plain")
            return
        if mode == "mismatch":
            self._send(201, json.dumps({"id": "0" * 64}).encode())
            return
        if mode == "garbage":
            self._send(201, b"<html>hello</html>", "text/html")
            return
        self._send(201 if mode != "existing" else 200,
                   json.dumps({"id": hashlib.sha256(body.encode()).hexdigest()}).encode())

    def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except BrokenPipeError:  # the client gave up (the timeout test)
            pass


@pytest.fixture
def factory() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Factory)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Factory.received = []
    _Factory.mode = "ok"
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_matching_id_is_accepted_and_the_yaml_is_posted(factory: str) -> None:
    registration = anyio.run(lambda: register_schematic(factory + "/", SCHEMATIC_YAML, SCHEMATIC_ID))
    assert registration.id == SCHEMATIC_ID and registration.status == 201
    path, content_type, body = _Factory.received[0]
    assert path == "/schematics"
    assert content_type == "application/yaml"
    assert body == SCHEMATIC_YAML


def test_already_known_schematic_200_is_fine(factory: str) -> None:
    _Factory.mode = "existing"
    assert anyio.run(lambda: register_schematic(factory, SCHEMATIC_YAML, SCHEMATIC_ID)).status == 200


def test_a_different_id_is_an_error(factory: str) -> None:
    _Factory.mode = "mismatch"
    with pytest.raises(FactoryError, match=f"returned schematic id {'0' * 64}.*computed offline is {SCHEMATIC_ID}"):
        anyio.run(lambda: register_schematic(factory, SCHEMATIC_YAML, SCHEMATIC_ID))


def test_http_500_is_an_error_quoting_the_body(factory: str) -> None:
    _Factory.mode = "error"
    with pytest.raises(FactoryError, match="HTTP 500 .*storage unavailable"):
        anyio.run(lambda: register_schematic(factory, SCHEMATIC_YAML, SCHEMATIC_ID))


def test_non_json_answer_is_an_error(factory: str) -> None:
    _Factory.mode = "garbage"
    with pytest.raises(FactoryError, match="not JSON"):
        post_schematic(factory, SCHEMATIC_YAML)


def test_timeout_is_an_error(factory: str) -> None:
    _Factory.mode = "slow"
    started = time.monotonic()
    with pytest.raises(FactoryError, match="no answer within 0.3s"):
        anyio.run(lambda: register_schematic(factory, SCHEMATIC_YAML, SCHEMATIC_ID, timeout=0.3))
    assert time.monotonic() - started < 1.5


def test_unreachable_factory_and_bad_url() -> None:
    with pytest.raises(FactoryError, match="cannot reach the Image Factory"):
        post_schematic("http://127.0.0.1:9", SCHEMATIC_YAML, timeout=2)
    with pytest.raises(FactoryError, match="must start with http"):
        post_schematic("factory.talos.dev", SCHEMATIC_YAML)
