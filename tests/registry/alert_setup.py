"""What the alert tests share: a deployment to put rules on, and one window's series
handed to the evaluation, as a server hands them (windows a minute long)."""

from __future__ import annotations

from typing import Any

from postgres import Backend

import models
import pilothouse as ph
from pilothouse import _core

MINUTE = 60_000_000


def deployed(backend: Backend) -> ph.Registry:
    """A registry (as ann) with churn v1 deployed as "churn"."""
    reg = backend.open("ann")
    raw, _ = models.logistic_regression()
    reg.log_model(raw, "churn")
    ph.deploy("churn", "churn", version=1, registry=reg)
    return reg


def window(reg: ph.Registry, minute: int, **series: float) -> list[dict[str, Any]]:
    """Evaluates churn's rules on the window starting at `minute` with these series."""
    return _core.evaluate_alerts(reg._core, reg.actor, "churn", minute * MINUTE, series)
