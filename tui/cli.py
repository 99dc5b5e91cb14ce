"""`talos-gpu` command line: the TUI, `check`, `enable`, `demo` and `lab` (INTERFACE.md).

Imports are lazy: the parser and the first frame must not pay for the kubernetes client.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from lab.catalog import OPERATOR_SCENARIOS
from lab.catalog import SCENARIOS as LAB_SCENARIOS
from lab.releases import KNOWN as LAB_RELEASES
from lab.releases import get as lab_release
from tui.process import silence_stdout

if TYPE_CHECKING:
    from checks.target import Target

PROG = "talos-gpu"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        from checks.sanitize import safe  # the message quotes what was typed (or pasted)

        sys.stderr.write(f"{PROG}: {safe(message, one_line=True)} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text!r}")
    return value


OUTPUT_FORMATS = ("table", "json", "yaml", "markdown")

# The lab's scenarios, known without importing the lab (the demo's first frame must not wait for it);
# tests/test_cli.py checks this list against lab.scenarios.SCENARIOS.
# The lab's scenarios and releases, from the lab's own catalogue (lab/catalog.py, lab/releases.py: two small
# modules of names and versions; nothing else of the lab is loaded to list or check them)
SCENARIO_NAMES = tuple(LAB_SCENARIOS)
LAB_TALOS_VERSIONS = LAB_RELEASES
LAB_OPERATOR_SCENARIOS = OPERATOR_SCENARIOS

# `check` when its reader goes away before the report is out (`check | head -1`): no traceback, no message,
# and the exit code of the report itself (0 all pass, 1 a stage fails); before a report exists, 141
# (128 + SIGPIPE, what a shell reports for a program the closed pipe stopped).
BROKEN_PIPE_EXIT = 141


class _VersionAction(argparse.Action):
    """`--version`: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> NoReturn:
        from tui.process import version

        sys.stdout.write(f"{PROG} {version()}\n")
        raise SystemExit(0)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {port}")
    return port


def _lab_talos_version(text: str) -> str:
    if text not in LAB_TALOS_VERSIONS:
        raise argparse.ArgumentTypeError(f"unknown Talos version {text!r}; the lab runs: {', '.join(LAB_TALOS_VERSIONS)}")
    return text


def _scenario(text: str) -> str:
    if text not in SCENARIO_NAMES:
        raise argparse.ArgumentTypeError(f"unknown scenario {text!r}; known: {', '.join(SCENARIO_NAMES)}")
    return text


def _target_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--node", metavar="ADDR", help="the Talos node to check (default: first node of the talosconfig context)")
    common.add_argument("--talosconfig", metavar="PATH", help="talosconfig file (default: $TALOSCONFIG, else ~/.talos/config)")
    common.add_argument("--talos-context", metavar="NAME", help="context inside the talosconfig (default: its current context)")
    common.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    common.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current context)")
    common.add_argument("--profile", metavar="PATH", help="YAML file with the expected state (default: production track, the four "
                        "NVIDIA modules, RuntimeClass nvidia, the device plugin in kube-system)")
    common.add_argument("--read-only", "--readonly", dest="read_only", action="store_true",
                        help="no mutating action can be started")
    common.add_argument("--infra-repo", metavar="DIR",
                        help="where the infra files are read and written (default: the profile's infra_repo, "
                        "else the current directory)")
    common.add_argument("--factory", metavar="URL", help="Image Factory to register schematics with (default: compute the id offline)")
    common.add_argument("--refresh", metavar="SECONDS", type=_positive_float, default=5.0,
                        help="TUI: how often the panes re-read the cluster (0: only on r; default 5)")
    return common


def build_parser() -> OneLineParser:
    common = _target_options()
    parser = OneLineParser(prog=PROG, parents=[common],
                           description="Bring NVIDIA GPUs up on a Talos Linux Kubernetes node, and say why they are missing.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    check = sub.add_parser("check", parents=[common], help="run the checks headless (a table, JSON, YAML or Markdown)")
    check.add_argument("-o", "--output", metavar="FORMAT", choices=OUTPUT_FORMATS, default=None,
                       help="table (default), json (one object, schema 1), yaml (the same as YAML) or markdown "
                       "(an incident note to paste into a ticket)")
    check.add_argument("--json", action="store_true", help="the same as -o json")
    check.add_argument("--pod-test", action="store_true", help="also run the GPU test pod (creates and deletes one pod)")
    check.add_argument("--timeout", metavar="SECONDS", type=_positive_float, default=60.0,
                       help="upper bound for the whole sweep (default 60)")

    enable = sub.add_parser("enable", parents=[common], help="plan and apply the actions of failing stages")
    enable.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    enable.add_argument("--yes", action="store_true", help="do not ask before each action")
    enable.add_argument("--timeout", metavar="SECONDS", type=_positive_float, default=60.0,
                        help="upper bound for each check sweep (default 60)")

    for name, text in (("demo", "the TUI against the built-in lab (no cluster needed)"),
                       ("lab", "run the lab alone and print the export lines for kubectl and talos-gpu")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--scenario", metavar="NAME", type=_scenario, default="fresh",
                       help=f"lab scenario (default: fresh): {', '.join(SCENARIO_NAMES)}")
        p.add_argument("--talos-version", metavar="VERSION", type=_lab_talos_version, default=None,
                       help=f"the Talos release the lab node runs: {', '.join(LAB_TALOS_VERSIONS)} (default: "
                            "$TALOS_GPU_LAB_TALOS_VERSION, else v1.11.5; v1.13.9 for the GPU Operator scenarios)")
        if name == "demo":
            p.add_argument("--refresh", metavar="SECONDS", type=_positive_float, default=3.0,
                           help="how often the panes re-read the lab (default 3)")
            p.add_argument("--read-only", "--readonly", dest="read_only", action="store_true",
                           help="no mutating action can be started")
            p.add_argument("--web", action="store_true",
                           help="serve the demo to a browser on 127.0.0.1 (needs the extra: pip install 'talos-gpu[web]')")
            p.add_argument("--port", metavar="N", type=_port, default=None, help="--web: the port (default 8000)")
    return parser


def target_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Target:
    """`build_target` with the command line's options; the process-wide redactor learns the configs' secrets."""
    from checks import redact
    from checks.target import build_target

    return build_target(node=args.node, talosconfig=args.talosconfig, talos_context=args.talos_context,
                        kubeconfig=args.kubeconfig, kube_context=args.context, profile=args.profile,
                        infra_repo=args.infra_repo, env=env, redactor=redact.REDACTOR)


def check_target_files(args: argparse.Namespace) -> None:
    """The cheap checks of the command line's files, before the TUI's first frame (see checks.target)."""
    from checks.target import check_target_files as check_files

    check_files(node=args.node, talosconfig=args.talosconfig, kubeconfig=args.kubeconfig, profile=args.profile)


_STOP_SIGNALS: list[int] = []  # SIGTERM/SIGHUP received while the TUI, check or enable ran (see _stop_like_ctrl_c)


def _stop_like_ctrl_c() -> None:
    """SIGTERM or SIGHUP while the TUI runs: stop the way Ctrl-C (SIGINT) stops an asyncio program.

    Without this the default action ends the process on the spot: a running action's child process
    group (it has its own session) is left running, and the audit log never records the cancel.
    Forwarded to asyncio's SIGINT handler, the app's main task is cancelled, the app's workers are
    cancelled and awaited, so a running action kills its process group, records `cancelled`, and
    the terminal is restored.
    """
    import signal

    def forward(signum: int, frame: object) -> None:
        _STOP_SIGNALS.append(signum)
        on_interrupt = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt) and on_interrupt is not signal.default_int_handler:
            on_interrupt(signum, frame)  # asyncio.Runner's handler: cancels the main task
            return
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        if args.json and args.output not in (None, "json"):
            parser.error(f"--json and -o {args.output} ask for two formats; give one")
        args.output = "json" if args.json else (args.output or "table")
    if args.command == "demo" and args.port is not None and not args.web:
        parser.error("--port is for --web")
    try:
        return _main(args)
    finally:
        runner = sys.modules.get("checks.runner")
        if runner is not None:
            runner.kill_tracked_groups()  # a credential plugin the kubernetes client left running


def _main(args: argparse.Namespace) -> int:
    try:
        code = _dispatch(args)
    except KeyboardInterrupt:
        if _STOP_SIGNALS:
            return _stopped_by_signal()
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (`talos-gpu check | head -1`): not a failing stage
        silence_stdout()
        return _QUICK_EXIT[0] if _QUICK_EXIT else BROKEN_PIPE_EXIT
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        from checks.errors import StoppedBySignal, UsageError, one_line
        from checks.sanitize import safe

        if isinstance(exc, StoppedBySignal):  # its children are ended already
            _STOP_SIGNALS.append(exc.signum)
            return _stopped_by_signal()
        if isinstance(exc, UsageError):  # it may quote a file or a tool: one line, redacted, inert
            sys.stderr.write(f"{PROG}: {safe(exc, one_line=True)}\n")
            return 2
        sys.stderr.write(f"{PROG}: internal error: {safe(one_line(exc), one_line=True)}\n")
        if os.environ.get("TALOS_GPU_DEBUG"):
            raise
        return 2
    return _stopped_by_signal() if _STOP_SIGNALS else code


def _stopped_by_signal() -> int:
    """Stopped because of SIGTERM/SIGHUP: say so on one line; exit 128 + the signal number (143, 129)."""
    import signal

    signum = _STOP_SIGNALS[0]
    if signum == signal.SIGINT:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    sys.stderr.write(f"{PROG}: stopped by {signal.Signals(signum).name}\n")
    return 128 + signum


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "check":
        from tui.headless import run_check

        _stop_like_ctrl_c()  # SIGTERM/SIGHUP: talosctl's groups and the Kubernetes reader are ended, exit 128+N
        code = run_check(args, target_from_args(args))
        _QUICK_EXIT.append(code)
        return code
    if command == "enable":
        from tui.enable import enable

        _stop_like_ctrl_c()  # while no action runs; during one, enable's own handler cancels it (audited)
        return enable(args, target_from_args(args))
    if command in ("lab", "demo"):
        version = args.talos_version
        if args.scenario in LAB_OPERATOR_SCENARIOS and version is not None and not lab_release(version).cdi:
            print(f"talos-gpu {command}: scenario {args.scenario!r} is a Talos 1.13+ node (GPU Operator path); "
                  f"it does not run on {version}", file=sys.stderr)
            return 2
    if command == "lab":
        from lab.runtime import run_foreground

        return int(run_foreground(args.scenario, talos_version=args.talos_version) or 0)
    from tui.keymap import load_keymap

    args.keymap = load_keymap()  # a bad keymap file is one line, before the lab or the screen starts
    if command == "demo" and args.web:
        from tui.web import DEFAULT_PORT, run_web

        args.port = args.port or DEFAULT_PORT
        return run_web(args)
    if command == "demo":
        from tui.demo import run_demo

        _stop_like_ctrl_c()
        return run_demo(args)
    from tui.interactive import run_tui

    check_target_files(args)  # the rest of the target is built after the first frame
    _stop_like_ctrl_c()
    return run_tui(args, lambda: target_from_args(args))


_QUICK_EXIT: list[int] = []  # set once `check` has written its report


def run() -> NoReturn:
    """The program (console script `talos-gpu`, `python -m tui.cli`). After `check` it leaves at once:
    the exit handlers run (the kubeconfig loader removes its temporary certificate files), the output
    is flushed, and the interpreter's teardown of ~1,000 modules (~80 ms) is skipped. Everything else,
    and `main()` called from Python, ends the ordinary way."""
    import atexit

    atexit.register(_leave_after_the_exit_handlers)  # registered first, so it runs after every other one
    code = main()
    _EXIT_CODE.append(code)
    sys.exit(code)


_EXIT_CODE: list[int] = []  # what run() exits with


def _leave_after_the_exit_handlers() -> None:
    """The last exit handler: after `check`, flush and end the process without the interpreter's teardown."""
    if not _QUICK_EXIT or not _EXIT_CODE:
        return  # not `check`: the ordinary teardown
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the reader went away (a pipe closed early): the report's code all the same
        silence_stdout()
    os._exit(_EXIT_CODE[0])


if __name__ == "__main__":
    run()
