"""Dependencies point one way: tui → widgets → checks; lab stands apart."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_checks_never_imports_textual_in_a_fresh_interpreter() -> None:
    code = (
        "import sys, importlib, pkgutil, checks\n"
        "for m in pkgutil.walk_packages(checks.__path__, 'checks.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'textual' or n.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"checks imported Textual modules: {out.stdout.strip()}"


def test_domain_and_lab_do_not_reach_upwards() -> None:
    assert not {"textual", "tui", "widgets", "lab"} & _imports("checks")
    assert not {"tui", "checks", "widgets"} & _imports("lab")
    assert "tui" not in _imports("widgets")


def test_no_shell_anywhere() -> None:
    offenders = []
    for package in ("checks", "tui", "widgets", "lab"):
        for path in Path(REPO / package).rglob("*.py"):
            text = path.read_text()
            if "shell=True" in text or "os.system(" in text:
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
