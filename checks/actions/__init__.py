"""Actions: the change each failing stage needs, planned (shown first) and run (streamed, cancellable).

The contract is checks/actions/CONTRACT.md; `talos-gpu enable` and the TUI use only these names. They are
imported on first use: a stage table names its planners (checks/actions/plans.py) without paying for
the executor, the audit log or the lock, which only `enable` and the TUI's actions need.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "run_action": "checks.actions.execute",
    "ActionEvent": "checks.actions.model",
    "ActionResult": "checks.actions.model",
    "ActionStatus": "checks.actions.model",
    "FileChange": "checks.actions.model",
    "Plan": "checks.actions.model",
    "PlanError": "checks.actions.model",
    "Step": "checks.actions.model",
    "plan_action": "checks.actions.dispatch",
    "AuditLog": "checks.audit",
    "default_audit_path": "checks.audit",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(importlib.import_module(_WHERE[name]), name)
