"""Fixtures for the command-line tests: a temporary registry home and a populated registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from commandline import Cli


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    home = tmp_path / "home"
    monkeypatch.setenv("PILOTHOUSE_HOME", str(home))
    monkeypatch.delenv("PILOTHOUSE_URI", raising=False)
    monkeypatch.delenv("PILOTHOUSE_AUDIT_KEY", raising=False)
    return Cli(home)


@pytest.fixture
def populated(cli: Cli, logreg: tuple[Path, np.ndarray]) -> dict[str, Any]:
    """churn: v1 from a run (metrics, a dataset) aliased champion and guarded, v2 retrained
    from v1, v3 archived, a pending promotion of v2; fraud: one version."""
    path, X = logreg
    ann, lead = cli.registry("ann"), cli.registry("lead")
    with ann.start_run(name="train-lr", experiment="churn") as run:
        run.log_params({"C": 0.5})
        run.log_metrics({"auc": 0.9132, "f1": 0.84})
        v1 = run.log_model(path, "churn", training_data=X, tags={"team": "risk"})
    v2 = ann.log_model(path, "churn", parent=v1)
    ann.log_model(path, "churn")
    ann.archive_version("churn", 3)
    fraud = ann.log_model(path, "fraud")
    ann.set_alias("churn", "champion", 1)
    lead.set_policy("churn", "champion")
    request = ann.request_promotion("churn", "champion", 2, reason="auc +2 points")
    return {"v1": v1, "v2": v2, "fraud": fraud, "request": request, "registry": ann}
