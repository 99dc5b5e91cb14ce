"""The lab API server's throw-away TLS certificate, made with the `openssl` command-line tool.

`kubectl` sends a bearer token only over HTTPS, so the lab's Kubernetes API server needs a
certificate its clients can trust: a self-signed one for 127.0.0.1 / localhost, valid two days,
whose PEM text also serves as the kubeconfig's `certificate-authority-data`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUBJECT = "/CN=lab-apiserver"
SUBJECT_ALT_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost"
VALID_DAYS = 2


class CertificateError(RuntimeError):
    """openssl is missing or failed to make the certificate."""


@dataclass(frozen=True)
class ServerCertificate:
    cert_path: Path
    key_path: Path

    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()


def _command(binary: str, cert_path: Path, key_path: Path) -> list[str]:
    return [
        binary, "req", "-x509",
        "-newkey", "rsa:2048",
        "-nodes",
        "-days", str(VALID_DAYS),
        "-subj", SUBJECT,
        "-addext", SUBJECT_ALT_NAMES,
        "-keyout", str(key_path),
        "-out", str(cert_path),
    ]


class PendingCertificate:
    """An `openssl req` running in the background (the lab does other start-up work meanwhile)."""

    def __init__(self, state_dir: Path, *, openssl: str | None = None) -> None:
        binary = openssl or shutil.which("openssl")
        if binary is None:
            raise CertificateError("openssl not found on PATH: the lab API server needs it for its TLS certificate")
        self.cert_path = state_dir / "server.crt"
        self.key_path = state_dir / "server.key"
        self._process = subprocess.Popen(
            _command(binary, self.cert_path, self.key_path),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    def wait(self, timeout: float = 30.0) -> ServerCertificate:
        try:
            _, stderr = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            self._process.kill()
            self._process.communicate()
            raise CertificateError(f"openssl req did not finish within {timeout:.0f} s") from error
        if self._process.returncode != 0 or not self.cert_path.exists() or not self.key_path.exists():
            last_line = (stderr.strip().splitlines() or ["no output"])[-1]
            raise CertificateError(f"openssl req failed (exit {self._process.returncode}): {last_line}")
        os.chmod(self.key_path, 0o600)
        return ServerCertificate(cert_path=self.cert_path, key_path=self.key_path)


def generate_server_certificate(state_dir: Path, *, openssl: str | None = None) -> ServerCertificate:
    """Write `server.crt` and `server.key` (mode 0600) into `state_dir` and return their paths."""
    return PendingCertificate(state_dir, openssl=openssl).wait()
