"""What the registry hands back, as Python values: the records and their notebook views.

This module owns the record types: :class:`ModelVersion` (and :class:`SearchResults`, a list
of them), :class:`AliasMove`, :class:`Approval`, :class:`CheckRecord` (a suite of model checks
recorded on a version), :class:`AuditEvent`, :class:`AuditAnchor` and :class:`Deployment`, each with a ``_from`` constructor that reads one from the registry's
typed record (``_core.VersionRecord``, ``_core.AliasMoveRecord``, ...); the dicts that runs,
model summaries, webhook deliveries and lineage are handed out as, one converter per record
(``run_dict``, ``version_dict``, ...); their ``_repr_html_``; and the conversion between the
registry's times (microseconds since the epoch, UTC) and datetimes. It holds no connection:
``registry.py`` and ``serving.py`` fetch the records and convert them here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilothouse import _core, _html
from pilothouse.model import Model, ModelSource, default_source

__all__ = [
    "AliasMove",
    "Approval",
    "AuditAnchor",
    "AuditEvent",
    "CheckRecord",
    "Deployment",
    "ModelVersion",
    "SearchResults",
    "dataset_dict",
    "delivery_dict",
    "lineage_dict",
    "micros_of",
    "model_summary_dict",
    "run_dict",
    "time_of",
    "version_dict",
]


def time_of(micros: int | None) -> dt.datetime | None:
    """A registry time (microseconds since the epoch) as a UTC datetime; None stays None."""
    if micros is None:
        return None
    return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc)


def micros_of(when: dt.datetime | str | None) -> int | None:
    """A datetime (naive ones are UTC) or an ISO 8601 string as a registry time."""
    if when is None:
        return None
    if isinstance(when, str):
        return _core.parse_time(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1_000_000)


# -- the records handed out as dicts, one converter per record type ------------------------
# Their keys are sorted, as the registry's JSON documents have them (a webhook's payload
# carries a version so); times stay microseconds since the epoch.


def run_dict(record: _core.RunRecord) -> dict[str, Any]:
    """A run as ``get_run``, ``search_runs``, ``Run.info`` and lineage give it: the code under
    ``code`` ({git_commit, git_dirty, path}), each metric's points as {at, step, value}."""
    return {
        "actor": record.actor,
        "code": {
            "git_commit": record.git_commit,
            "git_dirty": record.git_dirty,
            "path": record.code_path,
        },
        "ended_at": record.ended_at,
        "environment": record.environment,
        "experiment": record.experiment,
        "id": record.id,
        "metric_history": {
            key: [{"at": at, "step": step, "value": value} for value, step, at in points]
            for key, points in record.metric_history.items()
        },
        "metrics": dict(record.metrics),
        "name": record.name,
        "params": dict(record.params),
        "started_at": record.started_at,
        "status": record.status,
    }


def version_dict(record: _core.VersionRecord) -> dict[str, Any]:
    """A version as lineage gives it (:class:`ModelVersion` is the typed view): ``parent`` as
    {model, uri, version} or None, ``input_example`` as its JSON text or None."""
    parent: dict[str, Any] | None = None
    if record.parent is not None:
        parent = {
            "model": record.parent_model,
            "uri": record.parent,
            "version": record.parent_version,
        }
    return {
        "aliases": list(record.aliases),
        "created_at": record.created_at,
        "created_by": record.created_by,
        "dataset": record.dataset,
        "description": record.description,
        "input_example": record.input_example,
        "metrics": dict(record.metrics),
        "model": record.model,
        "parent": parent,
        "run_id": record.run_id,
        "sha256": record.sha256,
        "signature": record.signature,
        "size": record.size,
        "status": record.status,
        "tags": dict(record.tags),
        "uri": record.uri,
        "version": record.version,
    }


def dataset_dict(record: _core.DatasetRecord) -> dict[str, Any]:
    """A training dataset as lineage gives it, with the URIs of the versions trained on it."""
    return {
        "created_at": record.created_at,
        "fingerprint": record.fingerprint,
        "has_profile": record.has_profile,
        "rows": record.rows,
        "schema": record.schema,
        "versions": list(record.versions),
    }


def lineage_dict(record: _core.LineageRecord) -> dict[str, Any]:
    """A version's lineage record (what :class:`~pilothouse.lineage.Lineage` is built from):
    version, run and dataset (None when absent), the parent chain nearest first, the URIs of
    the children, and deployments (always empty)."""
    return {
        "children": list(record.children),
        "dataset": None if record.dataset is None else dataset_dict(record.dataset),
        "deployments": [],
        "parents": [version_dict(p) for p in record.parents],
        "run": None if record.run is None else run_dict(record.run),
        "version": version_dict(record.version),
    }


def model_summary_dict(record: _core.ModelSummaryRecord) -> dict[str, Any]:
    """A model as ``list_models`` gives it: its latest version and its aliases."""
    return {
        "aliases": dict(record.aliases),
        "created_at": record.created_at,
        "created_by": record.created_by,
        "description": record.description,
        "latest_version": record.latest_version,
        "name": record.name,
    }


def delivery_dict(record: _core.DeliveryRecord) -> dict[str, Any]:
    """One webhook delivery as ``webhook_deliveries`` gives it."""
    return {
        "at": record.at,
        "attempts": record.attempts,
        "delivery": record.delivery,
        "error": record.error,
        "event": record.event,
        "id": record.id,
        "ok": record.ok,
        "status_code": record.status_code,
        "webhook_id": record.webhook_id,
    }


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
    _registry: ModelSource | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _from(cls, record: _core.VersionRecord, registry: ModelSource) -> ModelVersion:
        return cls(
            model=record.model,
            version=record.version,
            uri=record.uri,
            sha256=record.sha256,
            size=record.size,
            signature=record.signature or {},
            description=record.description,
            tags=dict(record.tags),
            metrics=dict(record.metrics),
            aliases=list(record.aliases),
            run_id=record.run_id,
            dataset=record.dataset,
            parent=record.parent,
            status=record.status,
            created_at=time_of(record.created_at),
            created_by=record.created_by,
            # the stored text, as Python wrote it (NaN for a missing value included)
            input_example=json.loads(record.input_example) if record.input_example else None,
            _registry=registry,
        )

    @property
    def name(self) -> str:
        return self.model

    def load(self, **options: Any) -> Model:
        """Load this version for inference (the artifact's hash is verified)."""
        registry = self._registry or default_source()
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
        fields = [[_html.th(k, style="text-align:left"), v] for k, v in rows]
        return _html.box(self.uri, _html.table(None, fields))


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
        return _html.box(f"{len(self)} versions", _html.dict_table(rows, self._COLUMNS))


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    version: int | None
    previous: int | None
    at: dt.datetime | None
    actor: str
    approval_id: int | None

    @classmethod
    def _from(cls, r: _core.AliasMoveRecord) -> AliasMove:
        return cls(
            model=r.model,
            alias=r.alias,
            version=r.version,
            previous=r.previous,
            at=time_of(r.at),
            actor=r.actor,
            approval_id=r.approval_id,
        )


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
    evidence: dict[str, Any] | None = None
    # the newest check of each suite recorded on the version, as they stood when read
    checks: list[CheckRecord] = field(default_factory=list)

    @classmethod
    def _from(cls, r: _core.ApprovalRecord) -> Approval:
        return cls(
            id=r.id,
            model=r.model,
            alias=r.alias,
            version=r.version,
            requested_by=r.requested_by,
            requested_at=time_of(r.requested_at),
            reason=r.reason or "",
            status=r.status,
            decided_by=r.decided_by,
            decided_at=time_of(r.decided_at),
            decision_reason=r.decision_reason,
            evidence=None if r.evidence is None else json.loads(r.evidence),
            checks=[CheckRecord._from_json(c) for c in r.checks],
        )


@dataclass(frozen=True)
class CheckRecord:
    """A suite of model checks run against a version (``pilothouse check``): whether all its
    checks passed, and what each found in ``results["checks"]``."""

    id: int
    model: str
    version: int
    suite: str
    passed: bool
    results: dict[str, Any]
    recorded_at: dt.datetime | None
    recorded_by: str

    @classmethod
    def _from(cls, r: _core.VersionCheckRecord) -> CheckRecord:
        return cls(
            id=r.id,
            model=r.model,
            version=r.version,
            suite=r.suite,
            passed=r.passed,
            results=r.results or {},
            recorded_at=time_of(r.recorded_at),
            recorded_by=r.recorded_by,
        )

    @classmethod
    def _from_json(cls, r: Mapping[str, Any]) -> CheckRecord:
        return cls(
            id=int(r["id"]),
            model=str(r["model"]),
            version=int(r["version"]),
            suite=str(r["suite"]),
            passed=bool(r["passed"]),
            results=dict(r.get("results") or {}),
            recorded_at=time_of(r.get("recorded_at")),
            recorded_by=str(r.get("recorded_by", "")),
        )

    @property
    def failed(self) -> list[str]:
        """The names of the checks that did not pass."""
        return [
            str(c.get("name"))
            for c in self.results.get("checks", [])
            if isinstance(c, Mapping) and c.get("passed") is False
        ]

    def _repr_html_(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        rows = [
            {
                "check": c.get("name", ""),
                "kind": c.get("check", ""),
                "verdict": "passed"
                if c.get("passed")
                else ("error" if c.get("error") else "failed"),
                "summary": c.get("summary", ""),
            }
            for c in self.results.get("checks", [])
            if isinstance(c, Mapping)
        ]
        when = f"{self.recorded_at:%Y-%m-%d %H:%M} UTC" if self.recorded_at else ""
        title = (
            f"suite {self.suite} on models:/{self.model}/{self.version}: {verdict} "
            f"({when} by {self.recorded_by})"
        )
        return _html.box(title, _html.dict_table(rows, ("check", "kind", "verdict", "summary")))


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: dt.datetime | None
    actor: str
    action: str
    model: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def _from(cls, r: _core.AuditEventRecord) -> AuditEvent:
        return cls(
            seq=r.seq,
            at=time_of(r.at),
            actor=r.actor,
            action=r.action,
            model=r.model,
            details=r.details or {},
            hash=r.hash,
        )


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
    def _from(cls, r: _core.AuditHeadRecord) -> AuditAnchor:
        return cls(r.seq, r.hash, time_of(r.at))

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


def _label(target: Mapping[str, Any]) -> str:
    return f"@{target['alias']}" if "alias" in target else f"v{target['version']}"


@dataclass
class Deployment:
    """A deployment as stored in the registry."""

    name: str
    model: str
    routes: list[tuple[str, float]]
    shadow: str | None
    generation: int
    updated_at: dt.datetime | None
    updated_by: str
    spec: dict[str, Any] = field(repr=False)
    versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def _from(cls, record: _core.DeploymentRecord) -> Deployment:
        spec = record.spec
        aliases = record.aliases

        def resolved(target: Mapping[str, Any]) -> int | None:
            found = target["version"] if "version" in target else aliases.get(target["alias"])
            return None if found is None else int(found)

        targets = [r["target"] for r in spec["routes"]] + (
            [spec["shadow"]] if spec.get("shadow") else []
        )
        at = record.updated_at
        return cls(
            name=record.name,
            model=record.model,
            routes=[(_label(r["target"]), float(r["weight"])) for r in spec["routes"]],
            shadow=_label(spec["shadow"]) if spec.get("shadow") else None,
            generation=record.generation,
            updated_at=time_of(at) if at else None,
            updated_by=record.updated_by or "",
            spec=spec,
            versions={_label(t): v for t in targets if (v := resolved(t)) is not None},
        )

    def _repr_html_(self) -> str:
        total = sum(w for _, w in self.routes) or 1.0
        rows = [
            [label, self.versions.get(label, "?"), f"{100 * w / total:.1f}%"]
            for label, w in self.routes
        ]
        if self.shadow:
            rows.append([f"{self.shadow} (shadow)", self.versions.get(self.shadow, "?"), "copy"])
        return _html.box(
            f"deployment {self.name}",
            f" of model {self.model} (generation {self.generation})",
            _html.table(("route", "version", "traffic"), rows),
        )
