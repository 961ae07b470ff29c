"""The registry client: connections, runs, and the module-level functions.

This module owns :class:`Registry` (a connection: versions, aliases, approvals, the audit
log, lineage and webhooks, each a call into the Rust registry), :class:`Run` (a training
run and what it records), the default registry and the module-level functions that use it
(``ph.start_run``, ``ph.set_alias``, ...). The records it returns are ``records.py``'s,
lineage is ``lineage.py``'s, paths and URIs are ``_paths.py``'s, and what a logged model
is turned into is ``convert.py``'s; they are importable from here too.

``connect()`` opens a registry: ``PILOTHOUSE_URI`` if set, else an embedded SQLite database
in ``~/.pilothouse/`` (or ``$PILOTHOUSE_HOME``), with artifacts in ``artifacts/`` beside it.
``connect("postgresql://user@host:5432/db?artifacts=/shared/artifacts")`` opens a team
registry (the password from ``$PGPASSWORD`` or ``~/.pgpass``; ``sslmode=verify-full`` with
``sslrootcert=`` for TLS). The module-level functions use the registry ``connect()`` opened
last, or the default one.

Actions are attributed to ``connect(actor=...)``, else ``$PILOTHOUSE_ACTOR``, else the OS
user.
"""

from __future__ import annotations

import atexit
import datetime as dt
import getpass
import json
import os
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from pilothouse import _core, _html
from pilothouse._json import jsonable
from pilothouse._lineage_env import GitProbe, dataset_fingerprint, environment
from pilothouse._paths import default_artifacts, default_uri, is_model_uri, reference_uri
from pilothouse._runtime import ensure_runtime
from pilothouse.convert import example_json, onnx_bytes, signature
from pilothouse.errors import ValidationError
from pilothouse.lineage import Lineage
from pilothouse.model import Model, use_default_source
from pilothouse.records import (
    AliasMove,
    Approval,
    AuditAnchor,
    AuditEvent,
    CheckRecord,
    ModelVersion,
    SearchResults,
    delivery_dict,
    micros_of,
    model_summary_dict,
    run_dict,
)

__all__ = [
    "AliasMove",
    "Approval",
    "AuditEvent",
    "CheckRecord",
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
    "checks",
    "delete_alias",
    "get_version",
    "lineage",
    "log_model",
    "reject",
    "request_promotion",
    "record_check",
    "restore_version",
    "search_versions",
    "set_alias",
    "set_policy",
    "start_run",
    "verify_audit_log",
]

VersionLike = Union[str, int, ModelVersion]


class Run:
    """A training run: params, metrics (with steps) and the models it logs.

    Use it as a context manager: it ends as "finished", or "failed" if the block raises.
    """

    def __init__(
        self, registry: Registry, record: _core.RunRecord, git: GitProbe | None = None
    ) -> None:
        self._registry = registry
        self._git = git
        self.id: str = record.id
        self.name: str = record.name
        self.experiment: str = record.experiment
        self.status: str = record.status

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
        return run_dict(self._registry._core.get_run(self.id))

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.status == "running":
            self.end("failed" if exc_type is not None else "finished")

    def _repr_html_(self) -> str:
        info = self.info()
        rows = [{"key": k, "value": v} for k, v in info["params"].items()]
        rows += [{"key": f"metric {k}", "value": v} for k, v in info["metrics"].items()]
        return _html.box(
            f"Run {self.name or self.id}",
            f" ({self.experiment}, {info['status']})",
            _html.dict_table(rows, ("key", "value")),
        )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, experiment={self.experiment!r}, status={self.status!r})"


class Registry:
    """A connection to a registry. Most users call ``ph.connect()`` or the module-level
    functions instead of building one directly."""

    def __init__(self, uri: str | None = None, *, actor: str | None = None) -> None:
        self._uri = uri or default_uri()
        self._core = _core.Registry.open(self._uri, str(default_artifacts()))
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
        record = self._core.create_run(
            self.actor,
            name,
            experiment,
            code_path=str(caller) if caller else None,
            environment=environment(),
        )
        return Run(self, record, git)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return run_dict(self._core.get_run(run_id))

    def search_runs(self, experiment: str | None = None) -> list[dict[str, Any]]:
        return [run_dict(r) for r in self._core.search_runs(experiment)]

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
        data = onnx_bytes(model, sample)
        ensure_runtime()
        # loading checks the model; graph optimisation would only slow that check down
        core = _core.Model.from_bytes(data, f"{name} (new version)", optimization="disable")
        dataset = None
        if training_data is not None:
            fingerprint, schema, rows = dataset_fingerprint(training_data)
            dataset = (fingerprint, schema, rows, None)
        run_id = run.id if isinstance(run, Run) else run
        parent_ref = None
        if parent is not None:
            pv = self._version(parent) if not isinstance(parent, ModelVersion) else parent
            parent_ref = (pv.model, pv.version)
        record = self._core.log_model(
            self.actor,
            name,
            data,
            signature(core),
            run_id=run_id,
            dataset=dataset,
            description=description,
            tags={str(k): str(v) for k, v in (tags or {}).items()},
            parent=parent_ref,
            input_example=example_json(
                input_example if input_example is not None else training_data, core
            ),
        )
        mv = ModelVersion._from(record, self)
        if training_data is not None:
            self._store_reference(mv, Model(core), training_data)
        return mv

    # rows of the training data the output reference is profiled from (inputs: all of them)
    _REFERENCE_ROWS = 200_000

    def _store_reference(self, mv: ModelVersion, model: Model, data: Any) -> None:
        """Profiles the training data as the model sees it, and the model's outputs on it,
        as the version's monitoring reference. A failure leaves the version without one and
        says so: monitoring then keeps profiles and health, without drift and quality."""
        try:
            sample = _head(data, self._REFERENCE_ROWS)
            inputs, outputs = model.reference_profiles(sample)
        except Exception as e:
            warnings.warn(
                f"{mv.uri}: no monitoring reference stored ({e}); set one with "
                "ph.set_reference(uri, data)",
                stacklevel=3,
            )
            return
        _core.set_reference(
            self._core, self.actor, mv.model, mv.version, inputs._data, outputs._data, inputs.rows
        )

    def _version(
        self, ref: VersionLike, version: int | str | None = None, at: Any = None
    ) -> ModelVersion:
        if isinstance(ref, ModelVersion):
            return ref
        if isinstance(ref, str) and is_model_uri(ref):
            uri = ref
        elif isinstance(ref, str) and version is not None:
            uri = reference_uri(ref, version)
        else:
            raise ValidationError(
                f"name a version as models:/name/3, models:/name@alias or models:/name/latest "
                f"(or a name and a version); got {ref!r}"
            )
        return ModelVersion._from(self._core.resolve(uri, micros_of(at)), self)

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
        return [model_summary_dict(r) for r in self._core.list_models()]

    def search_versions(
        self, filter: str = "", order_by: str = "", limit: int = 1000
    ) -> SearchResults:
        """Versions matching `filter`, e.g. ``"name = 'churn' and metrics.auc > 0.85 and
        tags.team = 'risk'"``, ordered by `order_by`, e.g. ``"metrics.auc desc"``. Archived
        versions show only when the filter names ``status``."""
        records = self._core.search_versions(filter, order_by, limit)
        return SearchResults(ModelVersion._from(r, self) for r in records)

    def archive_version(self, name: str, version: int) -> ModelVersion:
        """Soft-delete: hidden from ``latest`` and searches, artifact kept, restorable."""
        return ModelVersion._from(self._core.archive(self.actor, name, version), self)

    def restore_version(self, name: str, version: int) -> ModelVersion:
        return ModelVersion._from(self._core.restore(self.actor, name, version), self)

    # -- aliases and governance -----------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | ModelVersion) -> ModelVersion:
        """Point `alias` at `version`, atomically. Guarded aliases need an approval."""
        number = version.version if isinstance(version, ModelVersion) else int(version)
        return ModelVersion._from(self._core.set_alias(self.actor, name, alias, number), self)

    def delete_alias(self, name: str, alias: str) -> None:
        self._core.delete_alias(self.actor, name, alias)

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        """Every move of the alias, oldest first, with who and when."""
        return [AliasMove._from(r) for r in self._core.alias_history(name, alias)]

    def set_policy(
        self,
        name: str,
        alias: str,
        *,
        require_approval: bool = True,
        require_check: str | None = None,
        allow_rollback: bool | None = None,
    ) -> None:
        """Guard (or, with ``require_approval=False``, unguard) an alias: moving it then
        needs an approved request. With ``require_check`` (a suite's name, or ``"*"`` for
        every suite recorded), a request is approved, and the alias moves with it, only while
        the version's newest check of that suite passed (see ``pilothouse check`` and
        :meth:`record_check`). ``None`` keeps the policy's requirement; ``""`` drops it.
        ``allow_rollback=True`` lets an alert rule's ``rollback`` action move the alias back
        without an approval (``None`` keeps the policy's setting)."""
        self._core.set_policy(
            self.actor, name, alias, require_approval, require_check, allow_rollback
        )

    def policies(self, name: str) -> list[str]:
        """The guarded aliases of a model."""
        return [alias for alias, _ in self._core.policies(name)]

    def required_checks(self, name: str) -> dict[str, str]:
        """Guarded alias -> the suite whose passing check an approval requires."""
        return {alias: suite for alias, suite in self._core.policies(name) if suite}

    def record_check(
        self, name: str, version: int | ModelVersion, suite: str, results: Any
    ) -> CheckRecord:
        """Records what a suite of checks found on a version: a
        :class:`~pilothouse.testing.SuiteResult`, or a list of
        :class:`~pilothouse.testing.CheckResult`. It shows in :meth:`checks`, in the
        approvals of the version and in the audit log; a policy may require it to pass."""
        if isinstance(version, ModelVersion):
            if version.model != name:
                raise ValidationError(
                    f"record_check: {version.uri} is a version of {version.model}, not {name}"
                )
            number = version.version
        else:
            number = int(version)
        text = json.dumps(_check_results(results), allow_nan=False)
        return CheckRecord._from(self._core.record_check(self.actor, name, number, suite, text))

    def checks(self, name: str, version: int | None = None) -> list[CheckRecord]:
        """The checks recorded on a model (or one of its versions), newest first."""
        return [CheckRecord._from(r) for r in self._core.checks(name, version)]

    def request_promotion(
        self, name: str, alias: str, version: int, reason: str = "", evidence: Any = None
    ) -> Approval:
        """Ask for ``alias`` to move to ``version``; someone else approves. ``evidence`` (a
        :class:`~pilothouse.Comparison` from ``ph.compare``, or any JSON-ready dict) is kept
        with the request and in its audit event."""
        return Approval._from(
            self._core.request_promotion(
                self.actor, name, alias, int(version), reason, _evidence(evidence)
            )
        )

    def approve(self, request: int | Approval, reason: str = "") -> Approval:
        """Approve a request; the requester cannot approve their own."""
        rid = request.id if isinstance(request, Approval) else int(request)
        return Approval._from(self._core.decide(self.actor, rid, True, reason))

    def reject(self, request: int | Approval, reason: str = "") -> Approval:
        rid = request.id if isinstance(request, Approval) else int(request)
        return Approval._from(self._core.decide(self.actor, rid, False, reason))

    def approvals(self, name: str) -> list[Approval]:
        return [Approval._from(r) for r in self._core.approvals(name)]

    # -- audit, lineage, webhooks ---------------------------------------------------------

    def audit_log(self, model: str | None = None, limit: int = 10_000) -> list[AuditEvent]:
        return [AuditEvent._from(r) for r in self._core.audit_log(model, limit)]

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
        return AuditAnchor._from(self._core.audit_head())

    def lineage(self, ref: VersionLike, version: int | str | None = None) -> Lineage:
        mv = self._version(ref, version)
        return Lineage._from(self._core.lineage(mv.model, mv.version))

    def add_webhook(
        self, name: str, url: str, secret: str, events: Sequence[str] | None = None
    ) -> int:
        """Deliver events of model `name` to `url` as signed JSON (all events by default:
        version.created, alias.moved, approval.decided, version.archived)."""
        return self._core.add_webhook(self.actor, name, url, secret, list(events or []))

    def webhook_deliveries(self, name: str) -> list[dict[str, Any]]:
        return [delivery_dict(r) for r in self._core.deliveries(name)]

    def flush_webhooks(self, timeout: float = 30.0) -> bool:
        """Wait for queued deliveries (retries included); True when all are done."""
        return self._core.flush_webhooks(timeout)


def _head(data: Any, rows: int) -> Any:
    """The first `rows` rows of an array, frame or table (all of it when shorter)."""
    if hasattr(data, "iloc"):
        return data.iloc[:rows]
    if hasattr(data, "head") and hasattr(data, "columns"):
        return data.head(rows)
    if hasattr(data, "slice") and hasattr(data, "num_rows"):
        return data.slice(0, rows)
    if isinstance(data, Mapping):
        return {k: v[:rows] for k, v in data.items()}
    return data[:rows]


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


# ph.load_model("models:/...") and ModelVersion.load() without a registry use the default
# one; model.py learns of it here, so that it need not import this module.
use_default_source(default_registry)


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


def set_policy(
    name: str,
    alias: str,
    *,
    require_approval: bool = True,
    require_check: str | None = None,
    allow_rollback: bool | None = None,
) -> None:
    default_registry().set_policy(
        name,
        alias,
        require_approval=require_approval,
        require_check=require_check,
        allow_rollback=allow_rollback,
    )


def record_check(name: str, version: int | ModelVersion, suite: str, results: Any) -> CheckRecord:
    return default_registry().record_check(name, version, suite, results)


def checks(name: str, version: int | None = None) -> list[CheckRecord]:
    return default_registry().checks(name, version)


def _check_results(results: Any) -> dict[str, Any]:
    """A suite's results as the registry keeps them: ``{"checks": [{"name", "passed", ...}]}``,
    from a SuiteResult (``to_record``), CheckResults (``to_dict``), or such a dict."""
    if hasattr(results, "to_record"):
        document = results.to_record()
    elif isinstance(results, Mapping):
        document = dict(results)
    elif isinstance(results, Sequence) and not isinstance(results, (str, bytes)):
        checks = []
        for r in results:
            if not hasattr(r, "to_dict"):
                raise ValidationError(
                    f"check results must be CheckResults (from pilothouse.testing), not {r!r}"
                )
            checks.append({"name": r.check, **r.to_dict()})
        document = {"checks": checks}
    else:
        raise ValidationError(
            "check results must be a SuiteResult, a list of CheckResults or a dict with "
            f"'checks', not {type(results).__name__}"
        )
    entries = document.get("checks")
    if not isinstance(entries, list) or not entries:
        raise ValidationError("check results must hold at least one check")
    for i, c in enumerate(entries):
        if not isinstance(c, Mapping) or not isinstance(c.get("passed"), bool) or not c.get("name"):
            raise ValidationError(
                f"check {i} of the results needs a 'name' and 'passed' (true or false)"
            )
    result: dict[str, Any] = jsonable(document)
    return result


def request_promotion(
    name: str, alias: str, version: int, reason: str = "", evidence: Any = None
) -> Approval:
    return default_registry().request_promotion(name, alias, version, reason, evidence)


def _evidence(evidence: Any) -> str | None:
    """Evidence for a promotion request as JSON text."""
    if evidence is None:
        return None
    if hasattr(evidence, "to_evidence"):
        evidence = evidence.to_evidence()
    try:
        return json.dumps(evidence, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValidationError(
            f"evidence must be a Comparison or JSON-ready data (no NaN): {e}"
        ) from e


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
