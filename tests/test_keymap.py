"""The keymap file ($XDG_CONFIG_HOME/talos-gpu/keymap.yaml): loaded through Textual's App.set_keymap, so a
remapped key works, shows in the footer and in help; a bad file is one line and exit 2 before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from checks.errors import UsageError
from tests.paths import REPO
from tests.pilot import wait_until
from tui.app import TalosGpuApp
from tui.keymap import binding_ids, keymap_path, load_keymap


def write_keymap(config_home: Path, text: str) -> dict[str, str]:
    path = config_home / "talos-gpu" / "keymap.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"XDG_CONFIG_HOME": str(config_home), "HOME": str(config_home)}


def test_the_file_is_found_under_xdg_config_home_else_home(tmp_path: Path) -> None:
    assert keymap_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "talos-gpu" / "keymap.yaml"
    assert keymap_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "talos-gpu" / "keymap.yaml"
    assert load_keymap({"XDG_CONFIG_HOME": str(tmp_path / "none")}) == {}


def test_ids_keys_and_lists(tmp_path: Path) -> None:
    env = write_keymap(tmp_path, "refresh: f5\nquit: [q, ctrl+d]\nhelp: ' h , question_mark '\n")
    assert load_keymap(env) == {"refresh": "f5", "quit": "q,ctrl+d", "help": "h,question_mark"}
    assert {"help", "quit", "refresh", "action.run", "pane.node", "screenshot"} <= set(binding_ids())


@pytest.mark.parametrize(("text", "words"), [
    ("refresh: f5\nrefesh: f6\n", "unknown binding id 'refesh'"),
    ("- refresh\n", "expected a mapping of binding id to keys"),
    ("refresh: 5\n", "refresh: expected keys"),
    ("refresh: 'f5,'\n", "refresh: expected keys"),
    ("refresh: [f5\n", "is not valid YAML (line"),
])
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    env = write_keymap(tmp_path, text)
    with pytest.raises(UsageError, match="keymap .*keymap.yaml: ") as caught:
        load_keymap(env)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_demo_refuses_a_bad_keymap_before_its_lab_starts(tmp_path: Path) -> None:
    env = write_keymap(tmp_path, "no.such.binding: f5\n")
    result = subprocess.run([sys.executable, "-m", "tui.cli", "demo"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **env, "TMPDIR": str(tmp_path)}, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("talos-gpu: keymap ") and result.stderr.count("\n") == 1, result.stderr
    assert "unknown binding id 'no.such.binding'" in result.stderr
    assert not list(tmp_path.glob("talos-gpu-lab-*"))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_remapped_key_works_and_shows(lab_run, tmp_path: Path) -> None:
    from textual.widgets._footer import FooterKey

    run = lab_run("healthy")
    env = write_keymap(tmp_path / "config", "refresh: f5\n")
    app = TalosGpuApp(run.target, refresh=0, audit_path=tmp_path / "audit.log", state_dir=tmp_path / "state")
    app.set_keymap(load_keymap(env))
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.sweeps_done >= 1 and not main.sweeping, what="the first sweep")
        before = main.sweeps_done
        await pilot.press("r")  # no longer bound
        await pilot.pause(0.3)
        assert main.sweeps_done == before and not main.sweeping
        await pilot.press("f5")
        await wait_until(pilot, lambda: main.sweeps_done > before, what="the sweep f5 started")
        assert "f5" in [k.key for k in app.screen.query(FooterKey)]
        await pilot.press("question_mark")
        await pilot.pause()
        rows = [row for _title, group in app.screen.groups for row in group]  # type: ignore[attr-defined]
        assert ("f5", "re-read the cluster now") in rows


def test_the_docs_name_every_binding_id() -> None:
    text = (REPO / "docs" / "interface.md").read_text()
    section = text.split("## Keys and the keymap", 1)[1]
    assert [i for i in binding_ids() if f"`{i}`" not in section] == []
