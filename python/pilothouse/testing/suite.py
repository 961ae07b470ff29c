"""Suites of model checks declared in TOML and run against a registered version: what
``pilothouse check`` runs, records on the version and reports as a table or JUnit XML.

This module owns the suite file's format (:func:`load_suite`), running a suite
(:func:`run_suite`) and :class:`SuiteResult` (its table, JUnit XML and the record the
registry keeps). The checks themselves are :mod:`pilothouse.testing`'s assertions, named
without their ``assert_`` prefix; a suite holds no code, so teams without Python tests can
gate a promotion with it. A suite looks like this::

    name = "model-checks"            # recorded with the result (default: the file's name)
    baseline = "champion"            # what diff tests compare with (--baseline overrides)

    [data]
    live = "data/live.parquet"       # frames by name; paths relative to this file
    test = { path = "data/test.csv", target = "churned" }   # the target column is y

    [[checks]]
    check = "valid"                  # assert_valid against the candidate's stored reference
    data = "live"

    [[checks]]
    check = "better"                 # assert_better(candidate, baseline, X, y, ...)
    data = "test"
    metric = "roc_auc"
    confidence = 0.95
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import inspect
import re
import sys
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pilothouse import _html
from pilothouse._paths import reference_uri, version_uri
from pilothouse.errors import ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9 and 3.10
    import tomli as tomllib

__all__ = ["CheckOutcome", "Suite", "SuiteResult", "load_suite", "run_suite"]

# keys of a [[checks]] table that are not the assertion's own parameters
_SUITE_KEYS = {"check", "name", "data", "reference", "train", "predict_on"}

# what the record keeps of a check's table (the rows are examples, not data)
_RECORDED_ROWS = 20

# a suite's name: the registry's rule for names (names::key), checked before any check runs
_SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-. /:]{0,127}")

# train = "package.module:function"
_TRAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")

_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".feather": "feather"}
_FORMATS[".arrow"] = "feather"


@dataclass(frozen=True)
class DataSource:
    """A frame a suite names: its file, and the column that holds the target (if any)."""

    name: str
    path: Path
    target: Optional[str] = None


@dataclass(frozen=True)
class CheckSpec:
    """One ``[[checks]]`` entry: which assertion, on which data, with which parameters."""

    name: str
    check: str
    data: Optional[str]
    reference: Optional[str]
    train: Optional[str]
    predict_on: Optional[str]
    params: dict[str, Any]


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    path: Optional[Path]
    sha256: Optional[str]
    baseline: Optional[str]
    data: dict[str, DataSource]
    checks: list[CheckSpec]


def _assertions() -> dict[str, Callable[..., Any]]:
    from pilothouse import testing

    return {
        "valid": testing.assert_valid,
        "no_drift": testing.assert_no_drift,
        "predictions_close": testing.assert_predictions_close,
        "better": testing.assert_better,
        "reproducible": testing.assert_reproducible,
    }


# the assertions' parameters a suite does not set (they come from the suite's frames,
# versions and registry)
_PROVIDED = {
    "data",
    "reference",
    "current",
    "candidate",
    "baseline",
    "X",
    "y",
    "train",
    "predict_on",
    "registry",
}


def _parameters(check: str) -> set[str]:
    fn = _assertions()[check]
    return {
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in _PROVIDED
    }


def _check_type(label: str, kind: str, key: str, value: Any) -> None:
    """A parameter's value has the type of the assertion's default (numbers for numbers,
    a list of names where it takes names)."""
    default = inspect.signature(_assertions()[kind]).parameters[key].default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        wanted = "true or false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        wanted = "a number"
        if ok and isinstance(default, int) and not isinstance(value, int):
            ok, wanted = False, "a whole number"
    elif isinstance(default, str):
        ok, wanted = isinstance(value, str), "text"
    elif isinstance(default, tuple) or key in ("columns", "outputs"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        wanted = "a list of names"
    else:  # pos_label and the like: any one value
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        wanted = "text or a number"
    if not ok:
        raise ValidationError(f"{label}: {key} = {value!r} must be {wanted}")


def load_suite(source: str | Path | Mapping[str, Any]) -> Suite:
    """Reads and checks a suite: a TOML file, or the dict such a file holds (paths then
    relative to the current folder). Every mistake is named before any check runs."""
    if isinstance(source, Mapping):
        doc: Mapping[str, Any] = source
        path: Optional[Path] = None
        digest: Optional[str] = None
        folder = Path.cwd()
    else:
        path = Path(source)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ValidationError(f"cannot read the suite {path}: {e.strerror or e}") from e
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ValidationError(f"the suite {path} is not valid TOML: {e}") from e
        digest = hashlib.sha256(raw).hexdigest()
        folder = path.resolve().parent
    where = str(path) if path else "the suite"

    known = {"name", "baseline", "data", "checks"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValidationError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a suite has {', '.join(sorted(known))}"
        )
    name = doc.get("name", path.stem if path else "suite")
    if not isinstance(name, str) or not _SUITE_NAME.fullmatch(name) or ".." in name:
        raise ValidationError(
            f"{where}: name = {name!r}: a suite's name is recorded with its result; use up to "
            "128 letters, digits and '_', '-', '.', starting with a letter or digit"
        )
    baseline = doc.get("baseline")
    if baseline is not None and (
        isinstance(baseline, bool) or not isinstance(baseline, (str, int)) or baseline == ""
    ):
        raise ValidationError(f"{where}: baseline must be an alias or a version number")

    data: dict[str, DataSource] = {}
    tables = doc.get("data", {})
    if not isinstance(tables, Mapping):
        raise ValidationError(f"{where}: [data] must be a table of name = path")
    for key, value in tables.items():
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, Mapping) or not isinstance(value.get("path"), str):
            raise ValidationError(
                f'{where}: data "{key}" must be a path, or a table with path (and target)'
            )
        extra = sorted(set(value) - {"path", "target"})
        if extra:
            raise ValidationError(
                f'{where}: data "{key}" has unknown key(s) {", ".join(extra)}; use path and target'
            )
        target = value.get("target")
        if target is not None and not isinstance(target, str):
            raise ValidationError(f'{where}: data "{key}": target must be a column name')
        file = folder / value["path"]
        if not file.is_file():
            raise ValidationError(f'{where}: data "{key}": {file} is not a file')
        if file.suffix.lower() not in _FORMATS:
            raise ValidationError(
                f'{where}: data "{key}": {value["path"]} is not .parquet, .csv, .feather or .arrow'
            )
        data[str(key)] = DataSource(str(key), file, target)

    entries = doc.get("checks")
    if not isinstance(entries, list) or not entries:
        raise ValidationError(f"{where}: declare at least one [[checks]] table")
    assertions = _assertions()
    checks: list[CheckSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, 1):
        label = f"{where}: check {i}"
        if not isinstance(entry, Mapping):
            raise ValidationError(f"{label} must be a table")
        kind = entry.get("check")
        if not isinstance(kind, str) or kind not in assertions:
            raise ValidationError(
                f"{label}: check = {kind!r} is not one of {', '.join(assertions)}"
            )
        check_name = entry.get("name", kind)
        if (
            not isinstance(check_name, str)
            or not check_name.strip()
            or any(unicodedata.category(c).startswith("C") for c in check_name)
        ):
            raise ValidationError(f"{label}: name must be text without control characters")
        if check_name in seen:
            raise ValidationError(
                f'{label}: another check is named "{check_name}"; give each a distinct name'
            )
        seen.add(check_name)
        label = f'{where}: check "{check_name}"'
        allowed = _parameters(kind)
        params = {k: v for k, v in entry.items() if k not in _SUITE_KEYS}
        bad = sorted(set(params) - allowed)
        if bad:
            raise ValidationError(
                f"{label}: unknown parameter(s) {', '.join(bad)}; {kind} takes "
                f"{', '.join(sorted(allowed | {'data', 'name'}))}"
            )
        for key, value in params.items():
            _check_type(label, kind, key, value)
        names = {k: entry.get(k) for k in ("data", "reference", "train", "predict_on")}
        for key, value in names.items():
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{label}: {key} must be text")
        for key in ("data", "predict_on"):
            if names[key] is not None and names[key] not in data:
                raise ValidationError(
                    f'{label}: {key} = "{names[key]}" is not declared under [data] '
                    f"({', '.join(data) or 'none is'})"
                )
        if names["data"] is None:
            raise ValidationError(f"{label}: name its data (data = one of [data]'s names)")
        reference = names["reference"]
        if reference is not None and kind not in ("valid", "no_drift"):
            raise ValidationError(f"{label}: reference goes with valid and no_drift")
        if reference is not None and reference not in ("candidate", "baseline", *data):
            raise ValidationError(
                f'{label}: reference = "{reference}" must be candidate, baseline or a name '
                "under [data]"
            )
        if kind == "reproducible":
            if not _TRAIN.fullmatch(str(names["train"] or "")):
                raise ValidationError(
                    f'{label}: reproducible needs train = "module:function" (the function '
                    "that trains on the data and returns a model)"
                )
        elif names["train"] is not None or names["predict_on"] is not None:
            raise ValidationError(f"{label}: train and predict_on go with reproducible")
        if kind == "better" and data[str(names["data"])].target is None:
            raise ValidationError(
                f'{label}: better needs the labels: give data "{names["data"]}" a target column'
            )
        checks.append(
            CheckSpec(
                check_name,
                kind,
                names["data"],
                reference,
                names["train"],
                names["predict_on"],
                params,
            )
        )
    return Suite(
        name,
        path,
        digest,
        None if baseline is None else str(baseline),
        data,
        checks,
    )


@dataclass
class CheckOutcome:
    """What one check of a suite found; ``error`` when it could not run at all."""

    name: str
    check: str
    result: Any  # a pilothouse.testing.CheckResult
    error: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.result.passed) and not self.error

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else ("error" if self.error else "failed")


@dataclass
class SuiteResult:
    """A suite run against a version: each check's outcome, a table, JUnit XML, and
    ``record`` once the registry keeps it."""

    suite: str
    model: str
    version: int
    candidate: str
    baseline: Optional[str]
    path: Optional[str]
    sha256: Optional[str]
    outcomes: list[CheckOutcome] = field(default_factory=list)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    record: Any = None  # a pilothouse.CheckRecord

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failed(self) -> list[str]:
        return [o.name for o in self.outcomes if not o.passed]

    def to_record(self) -> dict[str, Any]:
        """What the registry keeps (``Registry.record_check``): the verdicts, summaries,
        numbers and the first rows of each check's table."""
        return {
            "suite": self.suite,
            "model": self.model,
            "version": self.version,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "suite_file": self.path,
            "suite_sha256": self.sha256,
            "started_at": self.started_at.isoformat(),
            "checks": [
                {
                    "name": o.name,
                    "check": o.check,
                    "passed": o.passed,
                    "error": o.error,
                    "summary": o.result.summary,
                    "rows": o.result.rows[:_RECORDED_ROWS],
                    "row_count": len(o.result.rows),
                    "details": o.result.details,
                    "seconds": round(o.seconds, 3),
                }
                for o in self.outcomes
            ],
        }

    def table(self) -> str:
        headers = ("CHECK", "KIND", "VERDICT", "SECONDS", "SUMMARY")
        rows = [
            tuple(
                " ".join(str(c).split())
                for c in (o.name, o.check, o.verdict, f"{o.seconds:.2f}", o.result.summary)
            )
            for o in self.outcomes
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
        lines = []
        for r in [headers, *rows]:
            cells = [c.ljust(w) for c, w in zip(r[:-1], widths)]
            lines.append("  ".join([*cells, r[-1]]).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        verdict = "passed" if self.passed else f"FAILED ({', '.join(self.failed)})"
        head = f"suite {self.suite} on {self.candidate}"
        if self.baseline:
            head += f" against {self.baseline}"
        parts = [f"{head}: {verdict}", self.table()]
        for o in self.outcomes:
            if not o.passed:
                parts.append(f"\n{o.name}: {o.result}")
        return "\n".join(parts)

    def to_junit(self, path: str | Path) -> None:
        """Writes JUnit XML: one test case per check, failures and errors with their
        message, and the candidate, baseline and suite as properties."""
        total = sum(o.seconds for o in self.outcomes)
        suites = ET.Element("testsuites")
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"pilothouse.{self.suite}",
            tests=str(len(self.outcomes)),
            failures=str(sum(1 for o in self.outcomes if o.verdict == "failed")),
            errors=str(sum(1 for o in self.outcomes if o.error)),
            skipped="0",
            time=f"{total:.3f}",
            timestamp=self.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        properties = ET.SubElement(suite, "properties")
        for key, value in (
            ("candidate", self.candidate),
            ("baseline", self.baseline),
            ("suite_sha256", self.sha256),
            ("record", None if self.record is None else self.record.id),
        ):
            if value is not None:
                ET.SubElement(properties, "property", name=f"pilothouse.{key}", value=str(value))
        for o in self.outcomes:
            case = ET.SubElement(
                suite,
                "testcase",
                # dots separate packages in CI views: none inside the model's or suite's name
                classname=f"pilothouse.{self.model.replace('.', '_')}.{self.suite.replace('.', '_')}",
                name=o.name,
                time=f"{o.seconds:.3f}",
            )
            if not o.passed:
                tag = "error" if o.error else "failure"
                element = ET.SubElement(
                    case,
                    tag,
                    message=" ".join(o.result.summary.split()),
                    type=str(o.result.details.get("error_type", "CheckFailed")),
                )
                element.text = str(o.result)
        ET.indent(suites)
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)

    def _repr_html_(self) -> str:
        rows = [
            {
                "check": o.name,
                "kind": o.check,
                "verdict": o.verdict,
                "seconds": f"{o.seconds:.2f}",
                "summary": o.result.summary,
            }
            for o in self.outcomes
        ]
        verdict = "passed" if self.passed else "FAILED"
        return _html.box(
            f"suite {self.suite} on {self.candidate}: {verdict}",
            _html.dict_table(rows, ("check", "kind", "verdict", "seconds", "summary")),
        )


def _read(source: DataSource) -> Any:
    """The file as a pandas DataFrame (pyarrow reads it)."""
    try:
        import pandas  # noqa: F401
    except ImportError as e:  # pragma: no cover - pandas is in every extra that runs suites
        raise ValidationError("suites read their data with pandas: pip install pandas") from e
    import pyarrow as pa

    kind = _FORMATS[source.path.suffix.lower()]
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(source.path)
        elif kind == "csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(source.path)
        else:
            import pyarrow.feather as feather

            table = feather.read_table(source.path)
    except (OSError, pa.ArrowException) as e:
        raise ValidationError(f'data "{source.name}": cannot read {source.path}: {e}') from e
    frame = table.to_pandas()
    if source.target is not None and source.target not in frame.columns:
        raise ValidationError(
            f'data "{source.name}": {source.path} has no column "{source.target}" (its target)'
        )
    return frame


def _train_function(spec: str, folder: Path) -> Callable[[Any], Any]:
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValidationError(f'train = "{spec}": cannot import {module_name}: {e}') from e
    finally:
        sys.path.remove(str(folder))
    fn = getattr(module, attribute, None)
    if not callable(fn):
        raise ValidationError(f'train = "{spec}": {module_name} has no function {attribute}')
    return fn  # type: ignore[no-any-return]


def run_suite(
    suite: Suite | str | Path | Mapping[str, Any],
    model: str,
    candidate: str | int = "latest",
    *,
    baseline: str | int | None = None,
    registry: Any = None,
    record: bool = True,
    progress: Optional[Callable[[CheckOutcome], None]] = None,
) -> SuiteResult:
    """Runs every check of ``suite`` against version ``candidate`` (an alias, a number or
    ``latest``) of ``model``, ``baseline`` (default: the suite's) for the diff tests. A
    check that raises is an error, and the others still run. With ``record``, the result is
    kept on the version (``Registry.record_check``), where approvals and the audit log show
    it and a policy may require it. ``progress`` is called after each check."""
    from pilothouse import testing
    from pilothouse.serving import _registry

    spec = suite if isinstance(suite, Suite) else load_suite(suite)
    reg = _registry(registry)
    version = reg.get_version(reference_uri(model, candidate))
    candidate_uri = version_uri(model, version.version)
    baseline_ref = baseline if baseline is not None else spec.baseline
    baseline_uri: Optional[str] = None
    if baseline_ref is not None:
        b = reg.get_version(reference_uri(model, baseline_ref))
        baseline_uri = version_uri(model, b.version)
    folder = spec.path.resolve().parent if spec.path else Path.cwd()

    frames: dict[str, Any] = {}

    def frame(name: str) -> Any:
        if name not in frames:
            frames[name] = _read(spec.data[name])
        return frames[name]

    def features(name: str) -> Any:
        target = spec.data[name].target
        f = frame(name)
        return f if target is None else f.drop(columns=[target])

    result = SuiteResult(
        spec.name,
        model,
        version.version,
        candidate_uri,
        baseline_uri,
        None if spec.path is None else str(spec.path),
        spec.sha256,
    )
    assertions = _assertions()
    for check in spec.checks:
        started = time.perf_counter()
        token = testing._collector.set(None)  # a suite's checks are not a pytest test's
        try:
            fn = assertions[check.check]
            data = str(check.data)
            if check.check in ("valid", "no_drift"):
                ref = check.reference or "candidate"
                if ref == "candidate":
                    reference: Any = candidate_uri
                elif ref == "baseline":
                    if baseline_uri is None:
                        raise ValidationError(
                            "reference = baseline, but no baseline is given (--baseline or "
                            "baseline = in the suite)"
                        )
                    reference = baseline_uri
                else:
                    reference = features(ref)
                if check.check == "valid":
                    outcome = fn(features(data), reference, registry=reg, **check.params)
                else:
                    outcome = fn(reference, features(data), registry=reg, **check.params)
            elif check.check in ("predictions_close", "better"):
                if baseline_uri is None:
                    raise ValidationError(
                        f"{check.check} compares the candidate with a baseline, and none is "
                        "given (--baseline or baseline = in the suite)"
                    )
                if check.check == "better":
                    y = frame(data)[spec.data[data].target].to_numpy()
                    outcome = fn(
                        candidate_uri,
                        baseline_uri,
                        features(data),
                        y,
                        registry=reg,
                        **check.params,
                    )
                else:
                    outcome = fn(
                        candidate_uri,
                        baseline_uri,
                        features(data),
                        registry=reg,
                        **check.params,
                    )
            else:
                train = _train_function(str(check.train), folder)
                predict_on = None if check.predict_on is None else features(check.predict_on)
                outcome = fn(train, data=features(data), predict_on=predict_on, **check.params)
            error = False
        except testing.CheckFailed as e:
            outcome, error = e.result, False
        except Exception as e:  # the check could not run: an error, and the suite goes on
            summary = f"error: {type(e).__name__}: {' '.join(str(e).split())}"
            outcome = testing.CheckResult(
                f"assert_{check.check}", False, summary, details={"error_type": type(e).__name__}
            )
            error = True
        finally:
            testing._collector.reset(token)
        done = CheckOutcome(check.name, check.check, outcome, error, time.perf_counter() - started)
        result.outcomes.append(done)
        if progress is not None:
            progress(done)
    if record:
        result.record = reg.record_check(model, version.version, spec.name, result)
    return result
