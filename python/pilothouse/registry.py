"""The model registry: runs, versions, aliases, approvals, lineage and the audit log.

``connect()`` opens a registry: ``PILOTHOUSE_URI`` if set, else an embedded SQLite database
in ``~/.pilothouse/`` (or ``$PILOTHOUSE_HOME``), with artifacts in ``artifacts/`` beside it.
``connect("postgresql://user@host:5432/db?artifacts=/shared/artifacts")`` opens a team
registry (the password from ``$PGPASSWORD`` or ``~/.pgpass``; ``sslmode=verify-full`` with
``sslrootcert=`` for TLS). The module-level functions (``ph.start_run``, ``ph.set_alias``, ...) use the
registry ``connect()`` opened last, or the default one.

Actions are attributed to ``connect(actor=...)``, else ``$PILOTHOUSE_ACTOR``, else the OS
user.
"""

from __future__ import annotations

import atexit
import datetime as dt
import getpass
import html
import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from pilothouse import _core
from pilothouse._lineage_env import GitProbe, dataset_fingerprint, environment
from pilothouse._runtime import ensure_runtime
from pilothouse.errors import InputError, ValidationError
from pilothouse.model import Model

__all__ = [
    "AliasMove",
    "Approval",
    "AuditEvent",
    "Lineage",
    "ModelVersion",
    "Registry",
    "Run",
    "SearchResults",
    "add_webhook",
    "alias_history",
    "approve",
    "archive_version",
    "audit_log",
    "audit_head",
    "AuditAnchor",
    "connect",
    "default_registry",
    "delete_alias",
    "get_version",
    "lineage",
    "log_model",
    "reject",
    "request_promotion",
    "restore_version",
    "search_versions",
    "set_alias",
    "set_policy",
    "start_run",
    "verify_audit_log",
]

VersionLike = Union[str, int, "ModelVersion"]


def _time(micros: int | None) -> dt.datetime | None:
    if micros is None:
        return None
    return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc)


def _micros(when: dt.datetime | str | None) -> int | None:
    if when is None:
        return None
    if isinstance(when, str):
        return _core.parse_time(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1_000_000)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    model: str
    version: int
    uri: str
    sha256: str
    size: int
    signature: dict[str, Any]
    description: str
    tags: dict[str, str]
    metrics: dict[str, float]
    aliases: list[str]
    run_id: str | None
    dataset: str | None
    parent: str | None
    status: str
    created_at: dt.datetime | None
    created_by: str
    input_example: Any = None
    _registry: Registry | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _from(cls, record: Mapping[str, Any], registry: Registry) -> ModelVersion:
        example = record.get("input_example")
        return cls(
            model=record["model"],
            version=int(record["version"]),
            uri=record["uri"],
            sha256=record["sha256"],
            size=int(record["size"]),
            signature=record.get("signature") or {},
            description=record.get("description") or "",
            tags=dict(record.get("tags") or {}),
            metrics=dict(record.get("metrics") or {}),
            aliases=list(record.get("aliases") or []),
            run_id=record.get("run_id"),
            dataset=record.get("dataset"),
            parent=(record.get("parent") or {}).get("uri"),
            status=record.get("status") or "active",
            created_at=_time(record.get("created_at")),
            created_by=record.get("created_by") or "",
            input_example=json.loads(example) if example else None,
            _registry=registry,
        )

    @property
    def name(self) -> str:
        return self.model

    def load(self, **options: Any) -> Model:
        """Load this version for inference (the artifact's hash is verified)."""
        registry = self._registry or default_registry()
        return registry.load_model(self.uri, **options)

    def _repr_html_(self) -> str:
        rows = [
            ("URI", self.uri),
            ("status", self.status),
            ("aliases", ", ".join(self.aliases) or "—"),
            ("created", f"{self.created_at:%Y-%m-%d %H:%M:%S} UTC by {self.created_by}"),
            ("sha256", self.sha256[:16] + "…"),
            ("size", f"{self.size:,} bytes"),
            ("run", self.run_id or "—"),
            ("dataset", (self.dataset or "—")[:16]),
            ("parent", self.parent or "—"),
            ("metrics", ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items()) or "—"),
            ("tags", ", ".join(f"{k}={v}" for k, v in self.tags.items()) or "—"),
        ]
        inputs = self.signature.get("inputs", [])
        sig = ", ".join(f"{i['name']}: {i['dtype']}{i['shape']}" for i in inputs)
        rows.append(("inputs", sig or "—"))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<div><strong>{html.escape(self.uri)}</strong><table>{body}</table></div>"


class SearchResults(list):  # type: ignore[type-arg]
    """A list of ModelVersion with a table view for notebooks."""

    _COLUMNS = ("uri", "status", "aliases", "metrics", "tags", "created_by", "created_at")

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "model": v.model,
                    "version": v.version,
                    "uri": v.uri,
                    "status": v.status,
                    "aliases": ",".join(v.aliases),
                    "created_at": v.created_at,
                    "created_by": v.created_by,
                    **{f"metrics.{k}": m for k, m in v.metrics.items()},
                    **{f"tags.{k}": t for k, t in v.tags.items()},
                }
                for v in self
            ]
        )

    def _repr_html_(self) -> str:
        rows = [
            {
                "uri": v.uri,
                "status": v.status,
                "aliases": ", ".join(v.aliases),
                "metrics": ", ".join(f"{k}={m:.4g}" for k, m in v.metrics.items()),
                "tags": ", ".join(f"{k}={t}" for k, t in v.tags.items()),
                "created_by": v.created_by,
                "created_at": f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else "",
            }
            for v in self
        ]
        return f"<div><strong>{len(self)} versions</strong>{_table(rows, self._COLUMNS)}</div>"


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    version: int | None
    previous: int | None
    at: dt.datetime | None
    actor: str
    approval_id: int | None


@dataclass(frozen=True)
class Approval:
    id: int
    model: str
    alias: str
    version: int
    requested_by: str
    requested_at: dt.datetime | None
    reason: str
    status: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None

    @classmethod
    def _from(cls, r: Mapping[str, Any]) -> Approval:
        return cls(
            id=r["id"],
            model=r["model"],
            alias=r["alias"],
            version=r["version"],
            requested_by=r["requested_by"],
            requested_at=_time(r["requested_at"]),
            reason=r["reason"] or "",
            status=r["status"],
            decided_by=r.get("decided_by"),
            decided_at=_time(r.get("decided_at")),
            decision_reason=r.get("decision_reason"),
        )


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: dt.datetime | None
    actor: str
    action: str
    model: str | None
    details: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class AuditAnchor:
    """The newest audit event's sequence number and hash, taken with :func:`audit_head`.

    Keep it outside the registry (a ticket, a commit, another system's log, or ``str(anchor)``
    anywhere); :func:`verify_audit_log` with it detects deleted newest events and a chain
    recomputed from scratch, which the chain alone cannot."""

    seq: int
    hash: str
    at: dt.datetime | None = None

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, anchor: AuditAnchor | str | dict[str, Any]) -> AuditAnchor:
        """An anchor from itself, its ``"seq:hash"`` text or a ``{"seq", "hash"}`` dict."""
        if isinstance(anchor, AuditAnchor):
            return anchor
        if isinstance(anchor, dict):
            return cls(int(anchor["seq"]), str(anchor["hash"]))
        seq, sep, digest = str(anchor).partition(":")
        if not sep or not seq.isdigit() or not digest:
            raise ValueError(
                f"audit anchor {anchor!r} is not 'seq:hash' (as str(ph.audit_head()) gives)"
            )
        return cls(int(seq), digest)


class Lineage:
    """Where a version came from and where it went, as a graph and as tables.

    ``nodes`` are dicts with ``id``, ``kind`` (version, run, dataset, code, environment,
    deployment) and attributes; ``edges`` are ``(source, target, relation)``.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.version: dict[str, Any] = record["version"]
        self.run: dict[str, Any] | None = record.get("run")
        self.dataset: dict[str, Any] | None = record.get("dataset")
        self.parents: list[dict[str, Any]] = record.get("parents", [])
        self.children: list[str] = record.get("children", [])
        self.deployments: list[Any] = record.get("deployments", [])
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[tuple[str, str, str]] = []
        self._build()

    def _build(self) -> None:
        v = self.version
        me = v["uri"]
        self.nodes.append({"id": me, "kind": "version", "sha256": v["sha256"]})
        if self.run:
            run_id = f"run:{self.run['id']}"
            code = self.run.get("code") or {}
            self.nodes.append(
                {
                    "id": run_id,
                    "kind": "run",
                    "name": self.run["name"],
                    "experiment": self.run["experiment"],
                    "status": self.run.get("status"),
                    "git_commit": code.get("git_commit"),
                    "git_dirty": code.get("git_dirty"),
                    "started_at": _time(self.run.get("started_at")),
                    "ended_at": _time(self.run.get("ended_at")),
                    "params": self.run["params"],
                    "metrics": self.run["metrics"],
                }
            )
            self.edges.append((run_id, me, "produced"))
            if code.get("git_commit"):
                code_id = f"git:{code['git_commit']}"
                self.nodes.append({"id": code_id, "kind": "code", **code})
                self.edges.append((code_id, run_id, "ran"))
            env_id = f"env:{self.run['id']}"
            self.nodes.append(
                {"id": env_id, "kind": "environment", **(self.run["environment"] or {})}
            )
            self.edges.append((env_id, run_id, "hosted"))
        if self.dataset:
            ds = f"dataset:{self.dataset['fingerprint']}"
            self.nodes.append({"id": ds, "kind": "dataset", "rows": self.dataset["rows"]})
            self.edges.append((ds, self.nodes[1]["id"] if self.run else me, "trained"))
            for other in self.dataset.get("versions", []):
                if other != me:
                    self.nodes.append({"id": other, "kind": "version"})
                    self.edges.append((ds, other, "trained"))
        child = me
        for parent in self.parents:
            self.nodes.append({"id": parent["uri"], "kind": "version", "sha256": parent["sha256"]})
            self.edges.append((parent["uri"], child, "retrained_into"))
            child = parent["uri"]
        for c in self.children:
            self.nodes.append({"id": c, "kind": "version"})
            self.edges.append((me, c, "retrained_into"))
        for d in self.deployments:
            self.nodes.append({"id": f"deployment:{d}", "kind": "deployment"})
            self.edges.append((me, f"deployment:{d}", "serves"))

    @property
    def upstream(self) -> list[dict[str, Any]]:
        targets = {self.version["uri"]}
        found: list[dict[str, Any]] = []
        changed = True
        while changed:
            changed = False
            for s, t, _ in self.edges:
                if t in targets and s not in targets:
                    targets.add(s)
                    changed = True
        for n in self.nodes:
            if n["id"] in targets and n["id"] != self.version["uri"]:
                found.append(n)
        return found

    def details(self, node: Mapping[str, Any]) -> str:
        """A node in one line: a run's name, experiment, status and code commit; a
        dataset's rows; a version's hash (and, for this version, when and by whom)."""
        kind = node.get("kind")
        parts: list[str] = []
        if kind == "run":
            parts.append(node.get("name") or "(unnamed run)")
            parts.append(f"experiment {node.get('experiment') or '—'}")
            parts.append(node.get("status") or "—")
            commit = node.get("git_commit")
            dirty = " (uncommitted changes)" if node.get("git_dirty") else ""
            parts.append(f"commit {commit[:12]}{dirty}" if commit else "no git commit")
        elif kind == "code":
            dirty = " (uncommitted changes)" if node.get("git_dirty") else ""
            parts.append(f"commit {node.get('git_commit')}{dirty}")
            if node.get("path"):
                parts.append(str(node["path"]))
        elif kind == "dataset":
            parts.append(f"{node.get('rows'):,} rows" if node.get("rows") is not None else "")
        elif kind == "environment":
            python = node.get("python")
            if python:
                parts.append(f"{node.get('implementation') or 'Python'} {python}")
            if node.get("platform"):
                parts.append(str(node["platform"]))
        elif kind == "version":
            if node.get("sha256"):
                parts.append(f"sha256 {node['sha256'][:12]}")
            if node["id"] == self.version["uri"]:
                created = _time(self.version.get("created_at"))
                if created is not None:
                    by = self.version.get("created_by") or "—"
                    parts.append(f"created {created:%Y-%m-%d %H:%M} UTC by {by}")
                if self.version.get("aliases"):
                    parts.append("aliases " + " ".join(self.version["aliases"]))
        return ", ".join(p for p in parts if p)

    def summary(self) -> list[dict[str, str]]:
        """One row per node: ``id``, ``kind`` and ``details`` (see :meth:`details`)."""
        return [{"id": n["id"], "kind": n["kind"], "details": self.details(n)} for n in self.nodes]

    def tables(self) -> dict[str, Any]:
        """The graph as pandas tables: ``nodes`` (with a run's name, experiment, status and
        git commit, and a ``details`` line for every node), ``edges``, ``params``,
        ``metrics``."""
        import pandas as pd

        params = (self.run or {}).get("params", {})
        history = (self.run or {}).get("metric_history", {})
        return {
            "nodes": pd.DataFrame(
                [
                    {
                        "id": n["id"],
                        "kind": n["kind"],
                        **{k: n.get(k) for k in ("name", "experiment", "status", "git_commit")},
                        "details": self.details(n),
                    }
                    for n in self.nodes
                ],
                columns=["id", "kind", "name", "experiment", "status", "git_commit", "details"],
            ),
            "edges": pd.DataFrame(self.edges, columns=["source", "target", "relation"]),
            "params": pd.DataFrame(sorted(params.items()), columns=["key", "value"]),
            "metrics": pd.DataFrame(
                [
                    {"key": k, "step": p["step"], "value": p["value"], "at": _time(p["at"])}
                    for k, points in history.items()
                    for p in points
                ],
                columns=["key", "step", "value", "at"],
            ),
        }

    def to_openlineage(self, namespace: str = "pilothouse") -> list[dict[str, Any]]:
        """OpenLineage run events (START and COMPLETE) for Marquez and similar."""
        run = self.run or {}
        run_id = run.get("id") or self.version["sha256"][:32]
        uid = f"{run_id[:8]}-{run_id[8:12]}-{run_id[12:16]}-{run_id[16:20]}-{run_id[20:32]}"
        job = {
            "namespace": namespace,
            "name": f"{run.get('experiment', 'registry')}.{run.get('name') or 'log_model'}",
        }
        producer = "https://pilothouse.invalid/registry"
        schema_url = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
        inputs = []
        if self.dataset:
            columns = (self.dataset.get("schema") or {}).get("columns", {})
            inputs.append(
                {
                    "namespace": namespace,
                    "name": f"dataset/{self.dataset['fingerprint']}",
                    "facets": {
                        "schema": {
                            "_producer": producer,
                            "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
                            "fields": [{"name": k, "type": t} for k, t in columns.items()],
                        }
                    },
                }
            )
        outputs = [{"namespace": namespace, "name": self.version["uri"], "facets": {}}]
        facets: dict[str, Any] = {}
        if run.get("params"):
            facets["pilothouse_params"] = {
                "_producer": producer,
                "_schemaURL": schema_url,
                **run["params"],
            }
        code = run.get("code") or {}
        if code.get("git_commit"):
            facets["sourceCodeLocation"] = {
                "_producer": producer,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SourceCodeLocationJobFacet.json",
                "type": "git",
                "url": code.get("path") or "",
                "version": code["git_commit"],
            }
        events = []
        for kind, micros in (("START", run.get("started_at")), ("COMPLETE", run.get("ended_at"))):
            when = _time(micros) or _time(self.version["created_at"])
            events.append(
                {
                    "eventType": kind,
                    "eventTime": when.isoformat() if when else None,
                    "producer": producer,
                    "schemaURL": schema_url,
                    "run": {"runId": uid, "facets": facets},
                    "job": job,
                    "inputs": inputs,
                    "outputs": outputs if kind == "COMPLETE" else [],
                }
            )
        return events

    def _repr_html_(self) -> str:
        heading = f"<strong>Lineage of {html.escape(self.version['uri'])}</strong>"
        run = next((n for n in self.nodes if n["kind"] == "run"), None)
        if run is not None:
            heading += f"<br>run: {html.escape(self.details(run))}"
        nodes = [
            {"node": r["id"], "kind": r["kind"], "details": r["details"]} for r in self.summary()
        ]
        edges = [{"from": s, "relation": r, "to": t} for s, t, r in self.edges]
        return (
            f"<div>{heading}{_table(nodes, ('node', 'kind', 'details'))}"
            f"{_table(edges, ('from', 'relation', 'to'))}</div>"
        )

    def __repr__(self) -> str:
        return f"Lineage({self.version['uri']!r}, nodes={len(self.nodes)}, edges={len(self.edges)})"


class Run:
    """A training run: params, metrics (with steps) and the models it logs.

    Use it as a context manager: it ends as "finished", or "failed" if the block raises.
    """

    def __init__(
        self, registry: Registry, record: dict[str, Any], git: GitProbe | None = None
    ) -> None:
        self._registry = registry
        self._git = git
        self.id: str = record["id"]
        self.name: str = record["name"]
        self.experiment: str = record["experiment"]
        self.status: str = record["status"]

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._registry._core.log_params(
            self._registry.actor, self.id, [(str(k), str(v)) for k, v in params.items()]
        )

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._registry._core.log_metrics(
            self._registry.actor, self.id, [(str(k), float(v), step) for k, v in metrics.items()]
        )

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_model(self, model: Any, name: str, **kwargs: Any) -> ModelVersion:
        """Register `model` as a new version of `name`, linked to this run."""
        return self._registry.log_model(model, name, run=self, **kwargs)

    def end(self, status: str = "finished") -> None:
        code = self._git.result() if self._git is not None else None
        self._registry._core.end_run(self._registry.actor, self.id, status, code)
        self._git = None
        self.status = status

    def info(self) -> dict[str, Any]:
        """Everything recorded: params, latest metrics, metric history, code, environment."""
        result: dict[str, Any] = json.loads(self._registry._core.get_run(self.id))
        return result

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.status == "running":
            self.end("failed" if exc_type is not None else "finished")

    def _repr_html_(self) -> str:
        info = self.info()
        rows = [{"key": k, "value": v} for k, v in info["params"].items()]
        rows += [{"key": f"metric {k}", "value": v} for k, v in info["metrics"].items()]
        return (
            f"<div><strong>Run {html.escape(self.name or self.id)}</strong> "
            f"({html.escape(self.experiment)}, {html.escape(info['status'])})"
            f"{_table(rows, ('key', 'value'))}</div>"
        )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, experiment={self.experiment!r}, status={self.status!r})"


def _home() -> Path:
    return Path(os.environ.get("PILOTHOUSE_HOME", Path.home() / ".pilothouse")).expanduser()


def default_uri() -> str:
    """``$PILOTHOUSE_URI``, else ``sqlite:///<PILOTHOUSE_HOME or ~/.pilothouse>/registry.db``."""
    return os.environ.get("PILOTHOUSE_URI") or f"sqlite://{_home() / 'registry.db'}"


def _is_sklearn(model: Any) -> bool:
    return hasattr(model, "fit") and (hasattr(model, "predict") or hasattr(model, "transform"))


def _onnx_bytes(model: Any, sample: Any) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        return path.read_bytes()
    if hasattr(model, "SerializeToString"):
        data: bytes = model.SerializeToString()
        return data
    if _is_sklearn(model):
        if sample is None:
            raise InputError(
                "converting a scikit-learn model needs training_data or input_example to "
                "infer its input signature"
            )
        from pilothouse.convert import sklearn_to_onnx

        return sklearn_to_onnx(model, sample)
    raise InputError(
        f"cannot register a {type(model).__module__}.{type(model).__name__}: pass an ONNX "
        "file path, ONNX bytes, an onnx.ModelProto or a scikit-learn estimator"
    )


def _example_json(sample: Any, core: _core.Model, rows: int = 5) -> str | None:
    if sample is None:
        return None
    import numpy as np

    try:
        if hasattr(sample, "to_pandas") and not hasattr(sample, "iloc"):
            sample = sample.to_pandas()
        if hasattr(sample, "iloc"):
            head = sample.iloc[:rows]
            payload: Any = {"columns": {str(c): head[c].tolist() for c in head.columns}}
        elif isinstance(sample, Mapping):
            payload = {"inputs": {k: np.asarray(v)[:rows].tolist() for k, v in sample.items()}}
        else:
            payload = {"inputs": {core.inputs[0].name: np.asarray(sample)[:rows].tolist()}}
        return json.dumps(payload, default=str)
    except (TypeError, ValueError):
        return None


def _signature(core: _core.Model) -> dict[str, Any]:
    def spec(s: _core.TensorSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": s.name,
            "dtype": s.dtype,
            "shape": list(s.shape),
            "kind": s.kind,
        }
        if s.labels is not None:
            out["labels"] = s.labels
        return out

    return {
        "inputs": [spec(s) for s in core.inputs],
        "outputs": [spec(s) for s in core.outputs],
        "feature_names": core.feature_names,
        "opsets": core.opsets,
    }


class Registry:
    """A connection to a registry. Most users call ``ph.connect()`` or the module-level
    functions instead of building one directly."""

    def __init__(self, uri: str | None = None, *, actor: str | None = None) -> None:
        self._uri = uri or default_uri()
        self._core = _core.Registry.open(self._uri, str(_home() / "artifacts"))
        self.actor: str = actor or os.environ.get("PILOTHOUSE_ACTOR") or getpass.getuser()

    @property
    def uri(self) -> str:
        """The registry's URI (never with a password)."""
        return self._core.uri

    @property
    def backend(self) -> str:
        return self._core.backend

    @property
    def artifact_root(self) -> str:
        return self._core.artifact_root

    def __repr__(self) -> str:
        return f"Registry({self.uri!r}, actor={self.actor!r})"

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, name: str = "", experiment: str = "default") -> Run:
        """Start a run, recording the caller's git commit and the environment."""
        caller = _caller_file()
        git = GitProbe(caller) if caller else None  # answered when the run ends
        record = json.loads(
            self._core.create_run(
                self.actor,
                name,
                experiment,
                code_path=str(caller) if caller else None,
                environment=json.dumps(environment()),
            )
        )
        return Run(self, record, git)

    def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._core.get_run(run_id))
        return result

    def search_runs(self, experiment: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self._core.search_runs(experiment))
        return result

    # -- versions --------------------------------------------------------------------------

    def log_model(
        self,
        model: Any,
        name: str,
        *,
        run: Run | str | None = None,
        training_data: Any = None,
        input_example: Any = None,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
        parent: VersionLike | None = None,
    ) -> ModelVersion:
        """Register a new version of model `name`.

        `model` is an ONNX file path, ONNX bytes, an ``onnx.ModelProto`` or a scikit-learn
        estimator or pipeline (converted with skl2onnx, its signature inferred from
        `training_data` or `input_example`). The model is checked by loading it before
        anything is stored. `training_data` is fingerprinted (content hash, schema, rows)
        for lineage; `parent` names the version this one was retrained from.
        """
        sample = training_data if training_data is not None else input_example
        data = _onnx_bytes(model, sample)
        ensure_runtime()
        # loading checks the model; graph optimisation would only slow that check down
        core = _core.Model.from_bytes(data, f"{name} (new version)", optimization="disable")
        dataset = None
        if training_data is not None:
            fingerprint, schema, rows = dataset_fingerprint(training_data)
            dataset = (fingerprint, json.dumps(schema), rows, None)
        run_id = run.id if isinstance(run, Run) else run
        parent_ref = None
        if parent is not None:
            pv = self._version(parent) if not isinstance(parent, ModelVersion) else parent
            parent_ref = (pv.model, pv.version)
        record = self._core.log_model(
            self.actor,
            name,
            data,
            json.dumps(_signature(core)),
            run_id=run_id,
            dataset=dataset,
            description=description,
            tags={str(k): str(v) for k, v in (tags or {}).items()},
            parent=parent_ref,
            input_example=_example_json(
                input_example if input_example is not None else training_data, core
            ),
        )
        return ModelVersion._from(json.loads(record), self)

    def _version(
        self, ref: VersionLike, version: int | str | None = None, at: Any = None
    ) -> ModelVersion:
        if isinstance(ref, ModelVersion):
            return ref
        if isinstance(ref, str) and ref.startswith("models:/"):
            uri = ref
        elif isinstance(ref, str) and version is not None:
            uri = (
                f"models:/{ref}/{version}"
                if str(version).isdigit() or version == "latest"
                else f"models:/{ref}@{version}"
            )
        else:
            raise ValidationError(
                f"name a version as models:/name/3, models:/name@alias or models:/name/latest "
                f"(or a name and a version); got {ref!r}"
            )
        return ModelVersion._from(json.loads(self._core.resolve(uri, _micros(at))), self)

    def get_version(
        self,
        ref: VersionLike,
        version: int | str | None = None,
        *,
        at: dt.datetime | str | None = None,
    ) -> ModelVersion:
        """A version by URI (``models:/churn/3``, ``models:/churn@champion``,
        ``models:/churn/latest``) or by name and version. With `at`, an alias resolves to
        the version it pointed at that moment."""
        return self._version(ref, version, at)

    def load_model(self, uri: VersionLike, **options: Any) -> Model:
        """Load a registered version for inference; the artifact's sha256 is verified."""
        mv = self._version(uri)
        data = self._core.artifact(mv.model, mv.version)
        ensure_runtime()
        return Model(_core.Model.from_bytes(data, mv.uri, **options))

    def list_models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self._core.list_models())
        return result

    def search_versions(
        self, filter: str = "", order_by: str = "", limit: int = 1000
    ) -> SearchResults:
        """Versions matching `filter`, e.g. ``"name = 'churn' and metrics.auc > 0.85 and
        tags.team = 'risk'"``, ordered by `order_by`, e.g. ``"metrics.auc desc"``. Archived
        versions show only when the filter names ``status``."""
        records = json.loads(self._core.search_versions(filter, order_by, limit))
        return SearchResults(ModelVersion._from(r, self) for r in records)

    def archive_version(self, name: str, version: int) -> ModelVersion:
        """Soft-delete: hidden from ``latest`` and searches, artifact kept, restorable."""
        return ModelVersion._from(json.loads(self._core.archive(self.actor, name, version)), self)

    def restore_version(self, name: str, version: int) -> ModelVersion:
        return ModelVersion._from(json.loads(self._core.restore(self.actor, name, version)), self)

    # -- aliases and governance -----------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | ModelVersion) -> ModelVersion:
        """Point `alias` at `version`, atomically. Guarded aliases need an approval."""
        number = version.version if isinstance(version, ModelVersion) else int(version)
        return ModelVersion._from(
            json.loads(self._core.set_alias(self.actor, name, alias, number)), self
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._core.delete_alias(self.actor, name, alias)

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        """Every move of the alias, oldest first, with who and when."""
        return [
            AliasMove(
                model=r["model"],
                alias=r["alias"],
                version=r["version"],
                previous=r["previous"],
                at=_time(r["at"]),
                actor=r["actor"],
                approval_id=r["approval_id"],
            )
            for r in json.loads(self._core.alias_history(name, alias))
        ]

    def set_policy(self, name: str, alias: str, *, require_approval: bool = True) -> None:
        """Guard (or unguard) an alias: moving it then needs an approved request."""
        self._core.set_policy(self.actor, name, alias, require_approval)

    def policies(self, name: str) -> list[str]:
        return self._core.policies(name)

    def request_promotion(self, name: str, alias: str, version: int, reason: str = "") -> Approval:
        return Approval._from(
            json.loads(self._core.request_promotion(self.actor, name, alias, int(version), reason))
        )

    def approve(self, request: int | Approval, reason: str = "") -> Approval:
        """Approve a request; the requester cannot approve their own."""
        rid = request.id if isinstance(request, Approval) else int(request)
        return Approval._from(json.loads(self._core.decide(self.actor, rid, True, reason)))

    def reject(self, request: int | Approval, reason: str = "") -> Approval:
        rid = request.id if isinstance(request, Approval) else int(request)
        return Approval._from(json.loads(self._core.decide(self.actor, rid, False, reason)))

    def approvals(self, name: str) -> list[Approval]:
        return [Approval._from(r) for r in json.loads(self._core.approvals(name))]

    # -- audit, lineage, webhooks ---------------------------------------------------------

    def audit_log(self, model: str | None = None, limit: int = 10_000) -> list[AuditEvent]:
        return [
            AuditEvent(
                seq=r["seq"],
                at=_time(r["at"]),
                actor=r["actor"],
                action=r["action"],
                model=r["model"],
                details=r["details"] or {},
                hash=r["hash"],
            )
            for r in json.loads(self._core.audit_log(model, limit))
        ]

    def verify_audit_log(self, anchor: AuditAnchor | str | dict[str, Any] | None = None) -> int:
        """Check the whole hash chain; returns the number of events, or raises
        IntegrityError naming the first event where it breaks.

        With ``anchor`` (from :meth:`audit_head`, taken earlier and kept elsewhere) it also
        detects deleted newest events and a recomputed chain. Events written while
        ``PILOTHOUSE_AUDIT_KEY`` was set are HMAC-keyed and need the same key to verify."""
        if anchor is None:
            return self._core.verify_audit_log()
        a = AuditAnchor.parse(anchor)
        return self._core.verify_audit_log(a.seq, a.hash)

    def audit_head(self) -> AuditAnchor:
        """The newest audit event as an anchor to keep outside the registry."""
        r = json.loads(self._core.audit_head())
        return AuditAnchor(r["seq"], r["hash"], _time(r["at"]))

    def lineage(self, ref: VersionLike, version: int | str | None = None) -> Lineage:
        mv = self._version(ref, version)
        return Lineage(json.loads(self._core.lineage(mv.model, mv.version)))

    def add_webhook(
        self, name: str, url: str, secret: str, events: Sequence[str] | None = None
    ) -> int:
        """Deliver events of model `name` to `url` as signed JSON (all events by default:
        version.created, alias.moved, approval.decided, version.archived)."""
        return self._core.add_webhook(self.actor, name, url, secret, list(events or []))

    def webhook_deliveries(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self._core.deliveries(name))
        return result

    def flush_webhooks(self, timeout: float = 30.0) -> bool:
        """Wait for queued deliveries (retries included); True when all are done."""
        return self._core.flush_webhooks(timeout)


def _caller_file() -> Path | None:
    """The first .py file up the stack outside pilothouse: the training code."""
    here = Path(__file__).resolve().parent
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.suffix == ".py" and path.is_file() and here not in path.resolve().parents:
            return path.resolve()
        frame = frame.f_back  # type: ignore[assignment]
    return None


_default: Registry | None = None
_default_lock = threading.Lock()


def connect(uri: str | None = None, *, actor: str | None = None) -> Registry:
    """Open a registry and make it the default for the module-level functions."""
    global _default
    registry = Registry(uri, actor=actor)
    with _default_lock:
        _default = registry
    return registry


def default_registry() -> Registry:
    """The registry the module-level functions use (opened on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def _flush_at_exit() -> None:
    if _default is not None:
        _default.flush_webhooks(timeout=5.0)


atexit.register(_flush_at_exit)


# -- module-level functions on the default registry ---------------------------------------


def start_run(name: str = "", experiment: str = "default") -> Run:
    """Start a run in the default registry (use it as a context manager)."""
    return default_registry().start_run(name, experiment)


def log_model(model: Any, name: str, **kwargs: Any) -> ModelVersion:
    """Register a new version of `name` in the default registry (see Registry.log_model)."""
    return default_registry().log_model(model, name, **kwargs)


def get_version(
    ref: VersionLike, version: int | str | None = None, *, at: dt.datetime | str | None = None
) -> ModelVersion:
    return default_registry().get_version(ref, version, at=at)


def search_versions(filter: str = "", order_by: str = "", limit: int = 1000) -> SearchResults:
    return default_registry().search_versions(filter, order_by, limit)


def set_alias(name: str, alias: str, version: int | ModelVersion) -> ModelVersion:
    return default_registry().set_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    default_registry().delete_alias(name, alias)


def alias_history(name: str, alias: str) -> list[AliasMove]:
    return default_registry().alias_history(name, alias)


def archive_version(name: str, version: int) -> ModelVersion:
    return default_registry().archive_version(name, version)


def restore_version(name: str, version: int) -> ModelVersion:
    return default_registry().restore_version(name, version)


def set_policy(name: str, alias: str, *, require_approval: bool = True) -> None:
    default_registry().set_policy(name, alias, require_approval=require_approval)


def request_promotion(name: str, alias: str, version: int, reason: str = "") -> Approval:
    return default_registry().request_promotion(name, alias, version, reason)


def approve(request: int | Approval, reason: str = "") -> Approval:
    return default_registry().approve(request, reason)


def reject(request: int | Approval, reason: str = "") -> Approval:
    return default_registry().reject(request, reason)


def lineage(ref: VersionLike, version: int | str | None = None) -> Lineage:
    return default_registry().lineage(ref, version)


def audit_log(model: str | None = None, limit: int = 10_000) -> list[AuditEvent]:
    return default_registry().audit_log(model, limit)


def verify_audit_log(anchor: AuditAnchor | str | dict[str, Any] | None = None) -> int:
    return default_registry().verify_audit_log(anchor)


def audit_head() -> AuditAnchor:
    return default_registry().audit_head()


def add_webhook(name: str, url: str, secret: str, events: Sequence[str] | None = None) -> int:
    return default_registry().add_webhook(name, url, secret, events)
