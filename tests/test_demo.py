"""The README's demo command runs end to end: register, serve over HTTP, predict, drift."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pilothouse.demo"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "POST /v2/models/churn/infer answered by version 1" in out, out
    assert "payload log: 1 request" in out
    assert "['monthly_charges'] drifted" in out
    assert "accuracy estimated without labels (CBPE)" in out
    assert "13. model test: 1 check(s) failed on 1 column(s)" in out and "support_calls" in out
    assert (
        "14. promotion gate: approval refused while no check is recorded; suite release passed"
        in out
    )
    assert "then approved by lead" in out
    assert "alerts: 2 rules evaluated on the closed 1s windows (the last at " in out
