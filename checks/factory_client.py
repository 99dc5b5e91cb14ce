"""Register a schematic with an Image Factory (`POST <url>/schematics`).

The schematic id is computed offline (checks.schematic); registering only makes the factory know
it, so that it can build the installer image. The factory answers `201` (or `200` for a schematic
it already has) with `{"id": "<sha256>"}`. An id that differs from the offline one means the two
disagree on the canonical YAML, and the upgrade would install something else: that is an error.

urllib is blocking: `register_schematic` runs it in a worker thread with a timeout.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import anyio

from checks.redact import redact

DEFAULT_TIMEOUT_S = 15.0
_BODY_LIMIT = 64 * 1024


class FactoryError(Exception):
    """The factory could not be reached, refused the schematic, or returned another id (one line)."""


@dataclass(frozen=True)
class Registration:
    id: str
    status: int  # 201 created, 200 already known


def schematics_url(factory_url: str) -> str:
    base = factory_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise FactoryError(f"Image Factory URL must start with http:// or https://, got {redact(factory_url)!r}")
    return f"{base}/schematics"


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def post_schematic(factory_url: str, schematic_yaml: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Registration:
    """Blocking `POST /schematics`; raises FactoryError with a one-line reason."""
    url = schematics_url(factory_url)
    request = urllib.request.Request(
        url,
        data=schematic_yaml.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/yaml", "Accept": "application/json",
                 "User-Agent": "talos-gpu"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
            status = int(response.status)
            body = response.read(_BODY_LIMIT).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            detail = exc.read(_BODY_LIMIT).decode("utf-8", errors="replace")
        except OSError:
            pass
        shown = f": {_short(detail)}" if detail.strip() else ""
        raise FactoryError(redact(f"POST {url}: HTTP {exc.code} {exc.reason}{shown}")) from None
    except TimeoutError:
        raise FactoryError(redact(f"POST {url}: no answer within {timeout:g}s")) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise FactoryError(redact(f"POST {url}: no answer within {timeout:g}s")) from None
        raise FactoryError(redact(f"POST {url}: cannot reach the Image Factory ({_short(str(reason))})")) from None
    except OSError as exc:
        raise FactoryError(redact(f"POST {url}: {_short(str(exc)) or type(exc).__name__}")) from None
    if status not in (200, 201):
        raise FactoryError(redact(f"POST {url}: unexpected HTTP {status}: {_short(body)}"))
    try:
        data = json.loads(body)
    except ValueError:
        raise FactoryError(redact(f"POST {url}: the answer is not JSON: {_short(body)}")) from None
    schematic = data.get("id") if isinstance(data, dict) else None
    if not isinstance(schematic, str) or not schematic:
        raise FactoryError(redact(f"POST {url}: the answer has no schematic id: {_short(body)}"))
    return Registration(schematic, status)


async def register_schematic(factory_url: str, schematic_yaml: str, expected_id: str, *,
                             timeout: float = DEFAULT_TIMEOUT_S) -> Registration:
    """Register the schematic and check the factory's id against the offline one.

    Raises FactoryError when the factory fails or answers with a different id.
    """
    registration = await anyio.to_thread.run_sync(
        lambda: post_schematic(factory_url, schematic_yaml, timeout=timeout), abandon_on_cancel=True)
    if registration.id != expected_id:
        raise FactoryError(f"the Image Factory returned schematic id {registration.id}, but the id computed "
                           f"offline is {expected_id}: refusing to upgrade to an image that may differ")
    return registration
