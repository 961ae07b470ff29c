"""The registry's whole API, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import polars as pl
import pytest
from postgres import Backend
from sklearn.linear_model import LogisticRegression

import models
import pilothouse as ph


def _frame(seed: int = 0, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])


def _clf(X: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(X, (X["a"] + X["b"] > 0).astype(int))


def test_log_model_from_every_form_and_load_it_back(registry: ph.Registry, tmp_path: Path) -> None:
    X = _frame()
    clf = _clf(X)
    with registry.start_run(name="train", experiment="churn") as run:
        v1 = run.log_model(
            clf, name="churn", training_data=X, description="sklearn", tags={"team": "risk"}
        )
    raw, _ = models.logistic_regression()
    path = tmp_path / "lr.onnx"
    path.write_bytes(raw)
    v2 = registry.log_model(path, "churn")
    v3 = registry.log_model(raw, "churn")
    v4 = registry.log_model(onnx.load_from_string(raw), "churn")
    assert [v.version for v in (v1, v2, v3, v4)] == [1, 2, 3, 4]
    assert (
        v1.uri == "models:/churn/1" and v1.description == "sklearn" and v1.tags == {"team": "risk"}
    )
    assert v1.signature["feature_names"] == ["a", "b", "c"]
    assert v1.signature["inputs"][0]["shape"] == [None, 3]
    assert v1.input_example["columns"]["a"] == X["a"].iloc[:5].tolist()
    assert v3.sha256 == v2.sha256 == v4.sha256  # content-addressed: same bytes, one artifact
    model = registry.load_model("models:/churn/1")
    np.testing.assert_array_equal(model.predict(X)["label"], clf.predict(X))
    np.testing.assert_allclose(
        model.predict(X[["c", "a", "b"]])["probabilities"], clf.predict_proba(X), atol=1e-5
    )
    assert registry.load_model("models:/churn/latest").path == "models:/churn/4"
    assert v1.load().path == "models:/churn/1"


def test_uris_and_not_found(registry: ph.Registry) -> None:
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    registry.set_alias("churn", "champion", 1)
    assert registry.get_version("models:/churn@champion").version == 1
    assert registry.get_version("churn", 1).uri == "models:/churn/1"
    assert registry.get_version("churn", "champion").version == 1
    with pytest.raises(ph.NotFoundError, match="model not found: nope"):
        registry.get_version("models:/nope/1")
    with pytest.raises(ph.NotFoundError, match=r"models:/churn/7"):
        registry.get_version("models:/churn/7")
    with pytest.raises(ph.NotFoundError, match=r"alias not found: churn@challenger"):
        registry.load_model("models:/churn@challenger")
    for bad in ("churn/1", "models:/churn", "models:/churn/0", "models:/../x/1"):
        with pytest.raises(ph.ValidationError):
            registry.get_version(bad)
    for name in ("../escape", "a/b", "", "x" * 200, "naïve"):
        with pytest.raises(ph.ValidationError, match="model name"):
            registry.log_model(raw, name)
    with pytest.raises(ph.ValidationError, match="alias"):
        registry.set_alias("churn", "latest", 1)


def test_alias_history_and_the_past(backend: Backend) -> None:
    ann, bob = backend.open("ann"), backend.open("bob")
    raw, _ = models.logistic_regression()
    for _ in range(3):
        ann.log_model(raw, "churn")
    ann.set_alias("churn", "champion", 1)
    time.sleep(0.01)
    between = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    bob.set_alias("churn", "champion", 3)
    history = ann.alias_history("churn", "champion")
    assert [(m.version, m.previous, m.actor) for m in history] == [(1, None, "ann"), (3, 1, "bob")]
    assert ann.get_version("models:/churn@champion").version == 3
    assert ann.get_version("models:/churn@champion", at=between).version == 1
    assert ann.get_version("models:/churn@champion", at=between.isoformat()).version == 1
    with pytest.raises(ph.NotFoundError):
        ann.get_version("models:/churn@champion", at="2001-01-01T00:00")
    ann.delete_alias("churn", "champion")
    assert ann.alias_history("churn", "champion")[-1].version is None


def test_search(registry: ph.Registry) -> None:
    raw, _ = models.logistic_regression()
    for name, auc, team in [
        ("churn", 0.91, "risk"),
        ("churn", 0.80, "risk"),
        ("churn", 0.95, "growth"),
        ("fraud", 0.99, "risk"),
    ]:
        with registry.start_run(experiment=name) as run:
            run.log_params({"C": 0.5})
            run.log_metrics({"auc": auc})
            run.log_model(raw, name, tags={"team": team})
    hits = registry.search_versions(
        "name = 'churn' and metrics.auc > 0.85 and tags.team = 'risk'", order_by="metrics.auc desc"
    )
    assert [v.uri for v in hits] == ["models:/churn/1"]
    ranked = registry.search_versions("metrics.auc > 0.5", order_by="metrics.auc desc")
    assert [v.metrics["auc"] for v in ranked] == [0.99, 0.95, 0.91, 0.80]
    assert len(registry.search_versions("params.C = '0.5' and version IN (1, 2)")) == 3
    frame = ranked.to_pandas()
    assert list(frame["metrics.auc"]) == [0.99, 0.95, 0.91, 0.80]
    assert "4 versions" in ranked._repr_html_()
    registry.archive_version("churn", 2)
    assert len(registry.search_versions("name = 'churn'")) == 2
    assert len(registry.search_versions("name = 'churn' and status = 'archived'")) == 1
    with pytest.raises(ph.ValidationError, match="unknown field 'colour'"):
        registry.search_versions("colour = 'red'")


def test_lineage_upstream_and_downstream(registry: ph.Registry) -> None:
    X = _frame()
    clf = _clf(X)
    with registry.start_run(name="train-churn", experiment="churn") as run:
        run.log_params({"C": 1.0, "max_iter": 100})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("loss", loss, step=step)
        run.log_metrics({"auc": 0.9})
        v1 = run.log_model(clf, "churn", training_data=X)
    # the same data held by polars has the same fingerprint
    v2 = registry.log_model(clf, "churn", training_data=pl.from_pandas(X), parent=v1)
    assert v2.dataset == v1.dataset and v2.parent == "models:/churn/1"
    lineage = registry.lineage("models:/churn/1")
    assert lineage.run is not None and lineage.run["params"] == {"C": "1.0", "max_iter": "100"}
    assert [p["value"] for p in lineage.run["metric_history"]["loss"]] == [0.9, 0.5, 0.3]
    assert lineage.dataset is not None and lineage.dataset["rows"] == len(X)
    assert lineage.dataset["schema"]["columns"] == {"a": "float64", "b": "float64", "c": "float64"}
    assert lineage.children == ["models:/churn/2"]
    assert lineage.deployments == []
    env = lineage.run["environment"]
    assert env["python"] and "numpy" in env["packages"] and "scikit-learn" in env["packages"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    if head.returncode == 0:
        assert lineage.run["code"]["git_commit"] == head.stdout.strip()
        assert isinstance(lineage.run["code"]["git_dirty"], bool)
    kinds = {n["kind"] for n in lineage.nodes}
    assert {"version", "run", "dataset", "environment"} <= kinds
    assert ("run:" + lineage.run["id"], "models:/churn/1", "produced") in lineage.edges
    tables = lineage.tables()
    assert set(tables) == {"nodes", "edges", "params", "metrics"} and len(tables["metrics"]) == 4
    upstream_of_v2 = registry.lineage("models:/churn/2")
    assert [p["uri"] for p in upstream_of_v2.parents] == ["models:/churn/1"]
    events = lineage.to_openlineage()
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[1]["outputs"][0]["name"] == "models:/churn/1"
    assert events[1]["inputs"][0]["name"] == f"dataset/{v1.dataset}"
    assert events[0]["run"]["runId"].count("-") == 4
    assert "Lineage of models:/churn/1" in lineage._repr_html_()


def test_governance(backend: Backend) -> None:
    ann, lead = backend.open("ann"), backend.open("lead")
    raw, _ = models.logistic_regression()
    ann.log_model(raw, "churn")
    ann.log_model(raw, "churn")
    ann.set_alias("churn", "champion", 1)
    lead.set_policy("churn", "champion")
    assert ann.policies("churn") == ["champion"]
    with pytest.raises(ph.ApprovalRequiredError, match="guarded"):
        ann.set_alias("churn", "champion", 2)
    request = ann.request_promotion("churn", "champion", 2, reason="auc +2 points")
    with pytest.raises(ph.ApprovalRequiredError, match="cannot also decide"):
        ann.approve(request)
    rejected = lead.reject(ann.request_promotion("churn", "champion", 2, reason="try again"), "no")
    assert rejected.status == "rejected" and rejected.decided_by == "lead"
    approved = lead.approve(request, reason="reviewed")
    assert approved.status == "approved" and approved.decided_by == "lead"
    ann.set_alias("churn", "champion", 2)
    moves = ann.alias_history("churn", "champion")
    assert moves[-1].approval_id == request.id
    with pytest.raises(ph.ApprovalRequiredError):
        ann.set_alias("churn", "champion", 1)  # the approval was for version 2, and it is used
    with pytest.raises(ph.ConflictError, match="already used"):
        lead.approve(request)
    actions = [e.action for e in ann.audit_log(model="churn")]
    assert {
        "policy.set",
        "approval.request",
        "approval.approve",
        "approval.reject",
        "alias.set",
    } <= set(actions)


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit SET actor = 'mallory' WHERE seq = 4",
        "DELETE FROM audit WHERE seq = 3",
        "UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1;",
        "UPDATE audit SET details = '{\"version\": 99}' WHERE seq = 5",
    ],
    ids=["edit", "delete", "reorder", "details"],
)
def test_tampering_with_the_audit_table_is_detected(backend: Backend, tamper: str) -> None:
    registry = backend.open()
    raw, _ = models.logistic_regression()
    for _ in range(4):
        registry.log_model(raw, "churn")
    assert registry.verify_audit_log() == 5
    backend.sql(tamper)
    with pytest.raises(ph.IntegrityError, match=r"audit log broken at event [345]"):
        registry.verify_audit_log()


def test_an_anchor_catches_truncation_and_the_key_catches_rewrites(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = backend.open()
    raw, _ = models.logistic_regression()
    for _ in range(3):
        registry.log_model(raw, "churn")
    anchor = registry.audit_head()
    assert anchor.seq == 4 and len(anchor.hash) == 64
    assert ph.AuditAnchor.parse(str(anchor)) == ph.AuditAnchor(anchor.seq, anchor.hash)
    assert registry.verify_audit_log(anchor=str(anchor)) == 4
    # The newest events deleted: still a valid chain, but shorter than the anchor says.
    backend.sql("DELETE FROM audit WHERE seq >= 3")
    assert registry.verify_audit_log() == 2
    with pytest.raises(ph.IntegrityError, match="truncated: the anchor names event 4"):
        registry.verify_audit_log(anchor)
    with pytest.raises(ValueError, match="not 'seq:hash'"):
        registry.verify_audit_log("four")
    # With a key in the environment new events are HMAC-keyed; editing one, even with every
    # plain hash after it recomputed, cannot be hidden without the key.
    monkeypatch.setenv("PILOTHOUSE_AUDIT_KEY", "a-key-kept-in-a-vault")
    registry.log_model(raw, "churn")
    keyed = registry.audit_log()[-1]
    assert keyed.hash.startswith("hmac-sha256:")
    assert registry.verify_audit_log() == 3
    # Writers without the key, or with another, are refused rather than break the chain.
    monkeypatch.delenv("PILOTHOUSE_AUDIT_KEY")
    with pytest.raises(ph.IntegrityError, match="PILOTHOUSE_AUDIT_KEY is not set"):
        registry.log_model(raw, "churn")
    monkeypatch.setenv("PILOTHOUSE_AUDIT_KEY", "another key")
    with pytest.raises(ph.IntegrityError, match="not the key the audit log was written with"):
        registry.log_model(raw, "churn")
    monkeypatch.setenv("PILOTHOUSE_AUDIT_KEY", "a-key-kept-in-a-vault")
    assert registry.verify_audit_log() == 3
    with pytest.raises(ph.ValidationError, match="negative"):
        registry.verify_audit_log({"seq": -1, "hash": "x"})
    backend.sql(f"UPDATE audit SET actor = 'mallory' WHERE seq = {keyed.seq}")
    with pytest.raises(ph.IntegrityError, match="another key"):
        registry.verify_audit_log()
    monkeypatch.delenv("PILOTHOUSE_AUDIT_KEY")
    with pytest.raises(ph.IntegrityError, match="set PILOTHOUSE_AUDIT_KEY"):
        registry.verify_audit_log()


def test_archive_and_restore_keep_the_artifact(registry: ph.Registry) -> None:
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    v2 = registry.log_model(raw + b"", "churn")
    registry.set_alias("churn", "champion", 2)
    with pytest.raises(ph.ConflictError, match="still aliased as champion"):
        registry.archive_version("churn", 2)
    archived = registry.archive_version("churn", 1)
    assert archived.status == "archived"
    assert registry.get_version("models:/churn/latest").version == 2
    assert registry.load_model("models:/churn/1").path == "models:/churn/1"  # still loadable
    assert Path(registry.artifact_root, "sha256", v2.sha256[:2], f"{v2.sha256}.onnx").is_file()
    assert registry.restore_version("churn", 1).status == "active"


def test_bad_input_loses_nothing(backend: Backend, tmp_path: Path) -> None:
    registry = backend.open()
    raw, _ = models.logistic_regression()
    v1 = registry.log_model(raw, "churn")
    with pytest.raises(ph.ModelLoadError):
        registry.log_model(b"not a model at all", "churn")
    with pytest.raises(ph.InputError, match="training_data or input_example"):
        registry.log_model(_clf(_frame()), "churn")
    with pytest.raises(ph.InputError, match=r"cannot register a builtins\.dict"):
        registry.log_model({"weights": 1}, "churn")
    with pytest.raises(FileNotFoundError):
        registry.log_model(tmp_path / "absent.onnx", "churn")
    assert [v.version for v in registry.search_versions("name = 'churn'")] == [1]
    # a corrupted artifact on disk is named with both hashes
    artifact = Path(registry.artifact_root, "sha256", v1.sha256[:2], f"{v1.sha256}.onnx")
    artifact.write_bytes(raw[:-10] + b"0123456789")
    with pytest.raises(
        ph.IntegrityError,
        match=rf"models:/churn/1 is corrupt: expected sha256 {v1.sha256}, found [0-9a-f]{{64}}",
    ):
        registry.load_model("models:/churn/1")
    assert registry.verify_audit_log() >= 2


def test_unreachable_database_names_the_uri_without_password() -> None:
    with pytest.raises(
        ph.StoreUnavailableError, match=r"postgresql://ann:\*\*\*@127\.0\.0\.1:1/reg"
    ) as info:
        ph.Registry("postgresql://ann:hunter2@127.0.0.1:1/reg?connect_timeout=2")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ph.ValidationError, match="registry URI"):
        ph.Registry("mysql://somewhere/db")


def test_a_database_that_goes_away(pg_server: tuple[Path, int], tmp_path: Path) -> None:
    from postgres import new_database, psql

    uri = new_database(*pg_server)
    registry = ph.Registry(f"{uri}?artifacts={tmp_path}")
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    name = uri.rsplit("/", 1)[1]
    admin = uri.rsplit("/", 1)[0] + "/postgres"
    psql(
        pg_server[0],
        admin,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )
    psql(pg_server[0], admin, f"ALTER DATABASE {name} RENAME TO {name}_gone")
    with pytest.raises(ph.StoreUnavailableError, match=name):
        registry.log_model(raw, "churn")
    psql(pg_server[0], admin, f"ALTER DATABASE {name}_gone RENAME TO {name}")
    assert registry.log_model(raw, "churn").version == 2  # reconnects, nothing was lost
    assert registry.verify_audit_log() == 3


def test_reprs(registry: ph.Registry) -> None:
    X = _frame()
    with registry.start_run(name="r1", experiment="e") as run:
        run.log_params({"C": 1})
        mv = run.log_model(_clf(X), "churn", training_data=X)
        assert "Run r1" in run._repr_html_() and "C" in run._repr_html_()
    page = mv._repr_html_()
    assert "models:/churn/1" in page and "inputs" in page and "X: float32" in page
    assert repr(registry).startswith("Registry(")


def test_default_registry_and_module_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PILOTHOUSE_URI", raising=False)
    monkeypatch.setenv("PILOTHOUSE_ACTOR", "carol")
    registry = ph.connect()
    assert registry.uri == f"sqlite://{tmp_path / 'home' / 'registry.db'}"
    assert registry.actor == "carol"
    raw, _ = models.logistic_regression()
    with ph.start_run(name="m", experiment="x") as run:
        run.log_metrics({"auc": 0.7})
        mv = run.log_model(raw, "churn")
    ph.set_alias("churn", "champion", mv.version)
    assert ph.load_model("models:/churn@champion").path == "models:/churn/1"
    assert [v.uri for v in ph.search_versions("metrics.auc < 0.8")] == ["models:/churn/1"]
    assert ph.verify_audit_log() == len(ph.audit_log())
    assert (tmp_path / "home" / "artifacts" / "sha256").is_dir()
    assert ph.alias_history("churn", "champion")[0].actor == "carol"
