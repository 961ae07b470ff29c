"""Performance estimated on served windows before their labels arrive (CBPE).

This module owns a version's reference with labels (:func:`set_label_reference`, which
``ph.set_reference(version, data, targets=y)`` calls: the model's predictions and
probabilities on the reference data with the true labels, stored in the registry) and
:func:`estimate_windows` (the estimator of :mod:`pilothouse.performance`, fitted on that
reference and run on each window of served rows, as ``ph.monitor(name).performance()``
shows until a window's labels arrive). CBPE's assumptions are the offline estimator's: no
concept shift, and probabilities that are calibrated or calibratable on the reference.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from pilothouse import _core
from pilothouse.errors import ValidationError
from pilothouse.performance import METRICS
from pilothouse.registry import Registry

__all__ = ["estimate_windows", "label_reference_classes", "set_label_reference"]


def set_label_reference(
    registry: Registry, model_name: str, version: int, outputs: dict[str, Any], targets: Any
) -> None:
    """Stores the model's ``outputs`` on the reference data (as ``predict`` returns them)
    with the true labels ``targets`` as the version's reference with labels."""
    import pandas as pd

    from pilothouse.realized import _classified, _Outputs

    y = np.asarray(targets.to_numpy() if hasattr(targets, "to_numpy") else targets)
    n = len(y)
    frame = pd.DataFrame({"target": pd.Series(list(y), dtype=object)})
    for name, values in outputs.items():
        values = list(values) if not isinstance(values, np.ndarray) else values.tolist()
        if len(values) != n:
            raise ValidationError(
                f"targets: {n} labels for {len(values)} rows of the model's output '{name}'"
            )
        frame["output." + name] = values
    spec = _Outputs(frame, None, None, None)
    if spec.regression or spec.proba is None:
        raise ValidationError(
            "targets= stores a reference for estimating a classifier's performance (CBPE); "
            "this model gives no class probabilities"
        )
    import warnings

    from pilothouse.realized import _clean

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        usable = len(_clean(frame, spec))
    if usable != n:
        raise ValidationError(
            f"targets: the model's outputs on {n - usable} of the {n} reference rows cannot be "
            "scored (missing or invalid probabilities)"
        )
    y_pred, y_true, proba = _classified(frame, spec)
    if (y_true == np.uint32(2**32 - 1)).any():
        raise ValidationError("targets: every reference row needs its label (some are missing)")
    missing = sorted(set(range(len(spec.classes))) - set(y_true.tolist()))
    if missing:
        raise ValidationError(
            f"targets: the classes {[spec.classes[i] for i in missing]} never occur among the "
            "reference labels; CBPE calibrates each class on them"
        )
    buffer = io.BytesIO()
    np.savez(buffer, y_pred=y_pred, y_true=y_true, proba=proba)
    _core.set_label_reference(
        registry._core,
        registry.actor,
        model_name,
        version,
        json.dumps(spec.classes),
        n,
        buffer.getvalue(),
    )


def _load(registry: Registry, model: str, version: int) -> tuple[list[str], Any] | None:
    found = _core.label_reference(registry._core, model, version)
    if found is None:
        return None
    classes, _, data = found
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return json.loads(classes), {k: arrays[k] for k in ("y_pred", "y_true", "proba")}


def label_reference_classes(registry: Registry, frame: Any) -> list[str] | None:
    """The classes of the first served version that has a reference with labels."""
    for model, version in frame[["model", "version"]].drop_duplicates().itertuples(index=False):
        found = _load(registry, str(model), int(version))
        if found is not None:
            return found[0]
    return None


def estimate_windows(
    frame: Any,
    classes: list[str],
    codes: tuple[np.ndarray, np.ndarray, np.ndarray],
    bounds: list[tuple[int, int]],
    metrics: list[str],
    registry: Registry,
) -> dict[str, dict[int, dict[str, Any]]]:
    """CBPE estimates ``{metric: {group: {estimate, lower, upper, alert}}}`` for the groups
    (row ranges ``bounds`` of ``frame``, whose class codes and probabilities are ``codes``)
    of every version with a reference with labels of the same classes."""
    wanted = [m for m in metrics if m in METRICS]
    if not wanted:
        return {}
    y_pred, _, proba = codes
    out: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in wanted}
    versions = frame[["model", "version"]].to_numpy()
    for model, version in {(str(m), int(v)) for m, v in versions}:
        found = _load(registry, model, version)
        if found is None or found[0] != classes:
            continue
        ref = found[1]
        groups = [
            g
            for g, (lo, hi) in enumerate(bounds)
            if hi > lo and str(versions[lo][0]) == model and int(versions[lo][1]) == version
        ]
        if not groups:
            continue
        sizes = sorted(bounds[g][1] - bounds[g][0] for g in groups)
        n_ref = len(ref["y_true"])
        size = max(1, min(sizes[len(sizes) // 2], n_ref // 2 if n_ref >= 2 else 1))
        reference_chunks = [(s, min(s + size, n_ref)) for s in range(0, n_ref - size + 1, size)]
        result = _core.estimate_performance(
            len(classes),
            (ref["y_pred"], ref["y_true"], ref["proba"]),
            reference_chunks,
            (y_pred, None, proba),
            [bounds[g] for g in groups],
            wanted,
        )
        for period, chunk, metric, estimate, lower, upper, alert in zip(
            result["period"],
            result["chunk"],
            result["metric"],
            result["estimate"],
            result["lower"],
            result["upper"],
            result["alert"],
        ):
            if period != "analysis":
                continue
            out[metric][groups[chunk]] = {
                "estimate": estimate,
                "lower": lower,
                "upper": upper,
                "alert": alert,
            }
    return out
