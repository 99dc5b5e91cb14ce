"""Actions: the change each failing stage needs, planned (shown first) and run (streamed, cancellable).

The contract is checks/actions/CONTRACT.md; `talos-gpu enable` and the TUI use only these names.
"""

from typing import Any

from checks.actions.execute import run_action
from checks.actions.model import (
    ActionEvent,
    ActionResult,
    FileChange,
    Plan,
    PlanError,
    Step,
)
from checks.actions.plans import plan_action
from checks.audit import AuditLog, default_audit_path


def __getattr__(name: str) -> Any:
    if name == "ACTION_STAGES":  # derived from the stage table (checks/actions/model.py)
        from checks.actions import model

        return model.ACTION_STAGES
    raise AttributeError(name)


__all__ = [
    "ACTION_STAGES",
    "ActionEvent",
    "ActionResult",
    "AuditLog",
    "FileChange",
    "Plan",
    "PlanError",
    "Step",
    "default_audit_path",
    "plan_action",
    "run_action",
]
