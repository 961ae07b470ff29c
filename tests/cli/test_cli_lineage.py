"""Lineage shows the run behind a version: its name, experiment, status and code commit, in
`pilothouse lineage`, in ``Lineage.tables()`` and in the notebook view."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from commandline import Cli, table

TRAIN = """\
import sys

import numpy as np

import pilothouse as ph

X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
registry = ph.Registry(actor="ann")
with registry.start_run(name="train-lr", experiment="churn") as run:
    run.log_params({"C": 0.5})
    run.log_metrics({"auc": 0.91})
    run.log_model(sys.argv[1], "churn", training_data=X)
try:
    with registry.start_run(name="nightly", experiment="churn-nightly") as run:
        run.log_model(sys.argv[1], "churn")
        raise RuntimeError("the evaluation crashed")
except RuntimeError:
    pass
"""


def _git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def trained(cli: Cli, logreg: tuple[Path, np.ndarray], tmp_path: Path) -> dict[str, Any]:
    """Versions 1 (finished run) and 2 (failed run) logged by a committed training script,
    versions 3 and 4 by the same script with an uncommitted edit."""
    # git is on every machine that can clone this repository: without it, fail, never skip.
    assert shutil.which("git") is not None, "git is not installed"
    project = tmp_path / "project"
    project.mkdir()
    script = project / "train.py"
    script.write_text(TRAIN)
    _git(project, "init", "-q")
    _git(project, "add", "train.py")
    _git(project, "commit", "-q", "-m", "train")
    commit = _git(project, "rev-parse", "HEAD")

    def train() -> None:
        subprocess.run(
            [sys.executable, str(script), str(logreg[0])],
            env=cli.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    train()
    script.write_text(TRAIN + "# an edit not committed\n")
    train()
    return {"commit": commit, "registry": cli.registry()}


def test_lineage_command(cli: Cli, trained: dict[str, Any]) -> None:
    commit = trained["commit"]
    out = cli.ok("lineage", "churn", "1")
    heading, nodes_text, edges_text = out.split("\n\n")
    assert heading.splitlines() == [
        "Lineage of models:/churn/1",
        f"run:     train-lr, experiment churn, finished, commit {commit[:12]}",
        "params:  C=0.5",
        "metrics: auc=0.91",
    ]
    nodes = table(nodes_text)
    run = next(n for n in nodes if n["KIND"] == "run")
    assert run["NODE"].startswith("run:") and len(run["NODE"]) == 4 + 32
    assert run["DETAILS"] == f"train-lr, experiment churn, finished, commit {commit[:12]}"
    code = next(n for n in nodes if n["KIND"] == "code")
    assert code["NODE"] == f"git:{commit}" and code["DETAILS"].startswith(f"commit {commit}, ")
    assert code["DETAILS"].endswith("train.py")
    dataset = next(n for n in nodes if n["KIND"] == "dataset")
    assert dataset["DETAILS"] == "40 rows"
    me = next(n for n in nodes if n["NODE"] == "models:/churn/1")
    assert me["KIND"] == "version" and "by ann" in me["DETAILS"]
    edges = {(e["FROM"], e["RELATION"], e["TO"]) for e in table(edges_text)}
    assert (run["NODE"], "produced", "models:/churn/1") in edges
    assert (f"git:{commit}", "ran", run["NODE"]) in edges

    failed = cli.ok("lineage", "churn", "2").splitlines()[1]
    assert failed == f"run:     nightly, experiment churn-nightly, failed, commit {commit[:12]}"
    edited = cli.ok("lineage", "churn", "3").splitlines()[1]
    assert edited.endswith(f"commit {commit[:12]} (uncommitted changes)")

    cli.ok("alias", "set", "churn", "champion", "4")
    document = cli.json("lineage", "churn", "champion")
    assert document["uri"] == "models:/churn/4"
    (run_node,) = [n for n in document["nodes"] if n["kind"] == "run"]
    assert run_node["name"] == "nightly" and run_node["experiment"] == "churn-nightly"
    assert run_node["status"] == "failed"
    assert run_node["git_commit"] == commit and run_node["git_dirty"] is True
    assert run_node["started_at"] <= run_node["ended_at"]  # ISO times in UTC sort as text
    assert {"source": run_node["id"], "target": "models:/churn/4", "relation": "produced"} in (
        document["edges"]
    )


def test_lineage_display_fields(trained: dict[str, Any], logreg: tuple[Path, np.ndarray]) -> None:
    commit = trained["commit"]
    registry = trained["registry"]
    lineage = registry.lineage("churn", 1)
    (run,) = [n for n in lineage.nodes if n["kind"] == "run"]
    assert (run["name"], run["experiment"], run["status"]) == ("train-lr", "churn", "finished")
    assert run["git_commit"] == commit and run["git_dirty"] is False
    assert run["started_at"] is not None and run["started_at"] <= run["ended_at"]

    nodes = lineage.tables()["nodes"]
    assert list(nodes.columns) == [
        "id",
        "kind",
        "name",
        "experiment",
        "status",
        "git_commit",
        "details",
    ]
    row = nodes[nodes["kind"] == "run"].iloc[0]
    assert (row["name"], row["experiment"], row["status"], row["git_commit"]) == (
        "train-lr",
        "churn",
        "finished",
        commit,
    )
    assert row["details"] == f"train-lr, experiment churn, finished, commit {commit[:12]}"
    assert nodes[nodes["kind"] == "code"].iloc[0]["git_commit"] == commit

    page = lineage._repr_html_()
    assert "Lineage of models:/churn/1" in page
    assert f"run: train-lr, experiment churn, finished, commit {commit[:12]}" in page
    assert f"<td>git:{commit}</td><td>code</td>" in page

    failed = registry.lineage("models:/churn/2")._repr_html_()
    assert f"run: nightly, experiment churn-nightly, failed, commit {commit[:12]}" in failed
    dirty = registry.lineage("models:/churn/4").summary()
    (run_row,) = [r for r in dirty if r["kind"] == "run"]
    assert run_row["details"].endswith("(uncommitted changes)")

    # a version logged outside any run has no run to show
    bare = registry.log_model(logreg[0], "churn")
    assert bare.run_id is None
    alone = registry.lineage(bare)
    assert [n["kind"] for n in alone.nodes] == ["version"]
    assert "run:" not in alone._repr_html_()
