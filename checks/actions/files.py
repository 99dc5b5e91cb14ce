"""Infra repository files for the actions: their state against the seed, and writing missing ones.

A file is written only when it is missing, atomically (a temporary file in the same directory,
then linked into place, which fails instead of overwriting if the file appeared meanwhile). A file
that exists is never touched: when it differs from the seed, the plan shows the difference and the
action uses the file as it is.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from checks.actions.model import FileChange, PlanError
from checks.infra import OutsideRepo, path_in_repo
from checks.profile import Profile

FILE_MODE = 0o644


def infra_path(profile: Profile, relative: str) -> Path:
    """The file's path; PlanError when it leaves the repo (`..`, a symlink to outside)."""
    try:
        return path_in_repo(profile.infra_repo, relative)
    except OutsideRepo as exc:
        raise PlanError(str(exc)) from None


def unified_diff(existing: str, seed: str, relative: str) -> str:
    lines = difflib.unified_diff(
        existing.splitlines(keepends=True), seed.splitlines(keepends=True),
        fromfile=f"{relative} (in the infra repo)", tofile=f"{relative} (what talos-gpu writes)",
    )
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return text


def file_change(profile: Profile, relative: str, content: str) -> FileChange:
    """The state of one infra file against the seed's content (reads, never writes)."""
    path = infra_path(profile, relative)
    if not path.exists() and not path.is_symlink():
        return FileChange(path, relative, content, "create", "")
    if path.is_dir():
        raise PlanError(f"infra repo: {relative} is a directory, expected a file ({path})")
    try:
        existing = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"infra repo: {relative} is not UTF-8 text ({path})") from None
    except OSError as exc:
        raise PlanError(f"infra repo: {relative} cannot be read: {exc.strerror or exc} ({path})") from None
    if existing == content:
        return FileChange(path, relative, content, "same", "")
    return FileChange(path, relative, content, "differs", unified_diff(existing, content, relative))


def write_new_file(path: Path, content: str, *, repo: Path | None = None, relative: str | None = None) -> bool:
    """Write `content` to `path` if, and only if, it does not exist. True when written.

    Parent directories are created (with the user's umask); the file gets mode 0644. The data is
    on disk (fsynced) before the file appears under its name. With `repo` and `relative`, the path
    is checked again right before writing (OutsideRepo, an OSError: a symlink to outside the repo
    may have appeared since the plan).
    """
    if repo is not None and relative is not None:
        try:
            path = path_in_repo(repo, relative)
        except OutsideRepo as exc:
            raise PermissionError(str(exc)) from None
    if path.exists() or path.is_symlink():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, FILE_MODE)
        try:
            os.link(temp_name, path)  # atomic, and fails rather than replacing a file that appeared
        except FileExistsError:
            return False
        except OSError:
            # a filesystem without hard links: fall back to rename, still never over an existing file
            if path.exists() or path.is_symlink():
                return False
            os.replace(temp_name, path)
        _fsync_directory(path.parent)
        return True
    finally:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
