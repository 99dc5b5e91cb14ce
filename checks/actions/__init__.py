"""Actions: the change each failing stage needs, planned (shown first) and run (streamed, cancellable).

The contract is checks/actions/CONTRACT.md; `talos-gpu enable` and the TUI use only these names.
"""

from checks.actions.execute import run_action
from checks.actions.model import (
    ACTION_STAGES,
    ActionEvent,
    ActionResult,
    ActionStatus,
    FileChange,
    Plan,
    PlanError,
    Step,
)
from checks.actions.plans import plan_action
from checks.audit import AuditLog, default_audit_path

__all__ = [
    "ACTION_STAGES",
    "ActionEvent",
    "ActionResult",
    "ActionStatus",
    "AuditLog",
    "FileChange",
    "Plan",
    "PlanError",
    "Step",
    "default_audit_path",
    "plan_action",
    "run_action",
]
