"""`pip install .` (not editable) must carry every file the app reads at run time: the lab's fake talosctl and
helm, the C source of their native client, the stylesheets. A file in a package that no package-data pattern
names would be missing from the wheel, and the installed `talos-gpu demo` would fail. (Checked by hand once:
`python -m venv /tmp/v && /tmp/v/bin/pip install . && /tmp/v/bin/talos-gpu demo` runs, from /tmp.)"""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib

from tests.paths import REPO

DEVELOPER_DOCS = {"CONTRACT.md"}  # notes for people changing the code, not read at run time


def test_every_run_time_file_of_a_package_is_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = config["packages"]["find"]["include"]
    data = config["package-data"]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for path in tracked:
        top, _, inside = path.partition("/")
        if not inside or not any(fnmatch.fnmatch(top, pattern) for pattern in packages):
            continue
        if path.endswith(".py") or path.rsplit("/", 1)[-1] in DEVELOPER_DOCS:
            continue
        if not any(fnmatch.fnmatch(inside, pattern) for pattern in data.get(top, [])):
            missing.append(path)
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"
    assert (REPO / "lab" / "bin" / "talosctl").exists() and fnmatch.fnmatch("bin/talosctl", data["lab"][0])
