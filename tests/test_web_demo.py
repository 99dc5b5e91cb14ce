"""`talos-gpu demo --web` in a real headless Chromium: the page connects, the demo's checklist reaches the
browser and is drawn (the screenshot is kept next to the test's files to look at), and stopping the server
leaves no process behind.

Chromium is driven over its DevTools protocol with aiohttp (which textual-serve brings): no browser download,
no extra test dependency. Skipped, saying why, where textual-serve (the `web` extra) or Chromium is missing;
.ci/setup installs Chromium so that CI runs it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REPO
from tests.procs import live_command_lines

pytest.importorskip("textual_serve", reason="textual-serve is not installed (pip install '.[web]'; make test does)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium; "
                                                          ".ci/setup installs it for CI)")

# Keeps what the page's websocket receives (the app's terminal output), so the test can wait for the checklist.
RECORD_WEBSOCKET = """
(() => {
  window.__received = "";
  const Native = window.WebSocket, decoder = new TextDecoder();
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (typeof event.data === "string") window.__received += event.data;
        else if (event.data instanceof ArrayBuffer) window.__received += decoder.decode(event.data, {stream: true});
        else if (event.data instanceof Blob) event.data.text().then((text) => { window.__received += text; });
      });
    }
  };
})();
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def left_behind(session: int, mention: str) -> list[str]:
    """Live processes of the server's session, or that name the test's directory (the lab's server does)."""
    found = list(live_command_lines(mention).values())
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except (OSError, NotADirectoryError):
            continue
        if entry.name.isdigit() and fields[0] != "Z" and int(fields[3]) == session:
            found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return found


def png_is_drawn(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the pixel data): a blank page has a handful."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    data, offset = b"", 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        if kind == b"IDAT":
            data += png[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(data)))


async def drive_browser(devtools_port: int, url: str, screenshot: Path, timeout: float) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))

            async def call(method: str, **params: Any) -> dict[str, Any]:
                call_id = next(ids)
                await ws.send_json({"id": call_id, "method": method, "params": params})
                while True:
                    message = json.loads((await ws.receive()).data)
                    if message.get("id") == call_id:
                        assert "error" not in message, message
                        return message.get("result", {})

            await call("Page.enable")
            await call("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
            await call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_WEBSOCKET)
            await call("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            received = ""
            while not all(word in received for word in ("Checklist", "gpu-workload", "PASS")):
                assert time.monotonic() < deadline, f"the checklist never reached the browser: {received[-800:]!r}"
                await asyncio.sleep(0.3)
                result = await call("Runtime.evaluate", expression="window.__received || ''")
                received = result["result"].get("value", "")
            await asyncio.sleep(1.0)  # the terminal draws what it received on its next animation frame
            shot = await call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return received


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_web_demo_shows_the_checklist_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "HOME": str(tmp_path), "TEXTUAL_ANIMATIONS": "none"}
    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "demo", "--web", "--port", str(port),
                               "--scenario", "healthy", "--refresh", "0"], cwd=REPO, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    profile = tmp_path / "chromium-profile"
    browser = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=30)
        assert CHROMIUM is not None
        browser = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                    "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            assert time.monotonic() < deadline and browser.poll() is None, "Chromium did not start"
            time.sleep(0.1)
        devtools_port = int(active.read_text().split()[0])
        screenshot = tmp_path / "web-demo.png"
        asyncio.run(drive_browser(devtools_port, f"http://127.0.0.1:{port}/", screenshot, timeout=90))
        width, height, distinct = png_is_drawn(screenshot.read_bytes())
        assert (width, height) == (1280, 800)
        assert distinct > 16, "the screenshot is blank"
        print(f"screenshot: {screenshot}")
    finally:
        if browser is not None:
            stop(browser)
        stop(server, signal.SIGINT)  # textual-serve's own way out: it stops each session's demo
    output = server.stdout.read().decode(errors="replace") if server.stdout else ""
    assert "http://127.0.0.1:" in output, output
    deadline = time.monotonic() + 20
    while left_behind(server.pid, str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left_behind(server.pid, str(tmp_path)) == []  # no demo, lab or API server left
