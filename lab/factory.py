"""A tiny Image Factory stand-in: ``POST /schematics`` on 127.0.0.1.

It answers ``201 {"id": "<sha256>"}`` for a schematic YAML (the id computed as the real factory
does, see ``lab/schematics.py``) and records the id with its extensions in ``state["factory"]``, so
the lab's ``talosctl upgrade`` then accepts ``factory.talos.dev/installer/<id>:<version>``. ``GET
/versions`` lists the Talos versions it serves. Run it alone with
``python -m lab.factory --state DIR [--port N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from lab import schematics
from lab import state as lab_state

MAX_BODY_BYTES = 64 * 1024
VERSIONS = ["v1.11.0", "v1.11.1", "v1.11.2", "v1.11.3", "v1.11.4", "v1.11.5"]


class FactoryHandler(BaseHTTPRequestHandler):
    server: FactoryHTTPServer
    server_version = "image-factory-lab"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        return

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/") == "/versions":
            self._reply(HTTPStatus.OK, json.dumps(VERSIONS).encode())
        else:
            self._error(HTTPStatus.NOT_FOUND, "404 page not found")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/") != "/schematics":
            self._error(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "schematic is too large")
            return
        body = self.rfile.read(length)
        try:
            document = yaml.safe_load(body.decode()) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as error:
            self._error(HTTPStatus.BAD_REQUEST, f"error unmarshaling schematic: {error}")
            return
        if not isinstance(document, dict) or not set(document) <= {"overlay", "customization"}:
            self._error(HTTPStatus.BAD_REQUEST, "error unmarshaling schematic: unknown fields in schematic")
            return
        identifier = schematics.schematic_id(document)
        extensions = schematics.official_extensions(document)
        with lab_state.mutate(self.server.state_dir) as state:
            state.setdefault("factory", {})[identifier] = extensions
        self._reply(HTTPStatus.CREATED, json.dumps({"id": identifier}).encode())


class FactoryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), FactoryHandler)
        self.state_dir = os.fspath(state_dir)


class Factory:
    """A factory server running in a background thread."""

    def __init__(self, state_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = FactoryHTTPServer(state_dir, host, port)
        self.thread = threading.Thread(target=self.server.serve_forever, name="lab-factory", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Factory:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Factory:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Image Factory stand-in for the talos-gpu lab")
    parser.add_argument("--state", required=True, help="the lab's state directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    server = FactoryHTTPServer(options.state, options.host, options.port)
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
