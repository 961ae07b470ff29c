"""Feedback on served answers: ground truth and good/bad flags.

This module owns :func:`log_feedback` (labels that arrive late, in bulk, and flags on single
answers, addressed by request id — the ``X-Request-ID`` a response carries (the client's,
the request body's v2 ``id``, or one the server made) — or
by a correlation key the request carried) and :func:`read_feedback` (what was received, as a
pandas table; ``ph.monitor(name).feedback(...)`` reads the same). Feedback is stored in the
registry (``rust/registry/src/registry/feedback.rs``), never overwritten: a second label for
the same request replaces the first when read, and the first stays on record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from pilothouse import _core
from pilothouse.errors import ValidationError
from pilothouse.registry import Registry
from pilothouse.serving import _registry, _since

__all__ = ["log_feedback", "read_feedback"]

When = Union[dt.datetime, dt.timedelta, str, None]


def _strings(values: Any, n: int, what: str) -> list[Optional[str]]:
    """A column of texts (None where missing), or one text for every row."""
    if values is None:
        return [None] * n
    if isinstance(values, str):
        return [values] * n
    out = [
        None if v is None or (isinstance(v, float) and v != v) else str(v) for v in _list(values)
    ]
    if len(out) != n:
        raise ValidationError(f"{what}: {len(out)} values for {n} rows")
    return out


def _list(values: Any) -> list[Any]:
    if hasattr(values, "to_list"):
        return list(values.to_list())
    if hasattr(values, "tolist"):
        return list(values.tolist())
    return list(values)


def _times(values: Any, n: int) -> list[Optional[int]]:
    if values is None:
        return [None] * n
    if isinstance(values, (dt.datetime, str)):
        return [_since(values)] * n
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(_list(values)), utc=True)
    if len(stamps) != n:
        raise ValidationError(f"time: {len(stamps)} values for {n} rows")
    micros = stamps.astype("int64") // 1000
    return [None if pd.isna(s) else int(m) for s, m in zip(stamps, micros)]


def log_feedback(
    deployment: str,
    *,
    ids: Optional[Sequence[Any]] = None,
    keys: Optional[Sequence[Any]] = None,
    targets: Optional[Sequence[Any]] = None,
    good: Union[bool, Sequence[bool], None] = None,
    comment: Union[str, Sequence[Optional[str]], None] = None,
    user: Union[str, Sequence[Optional[str]], None] = None,
    time: Any = None,
    registry: Registry | str | None = None,
) -> dict[str, int]:
    """Stores labels or flags on ``deployment``'s answers; returns ``{"accepted": n,
    "replaced": m}`` (m: requests that already had a label, or a flag, which the new one
    replaces).

    Address the answers by ``ids`` (the request ids the responses carried) or by ``keys``
    (the ``correlation_id`` parameter the requests carried), lists, arrays or Series. Give
    ``targets`` (the true class or value of each) for labels, or ``good`` (True or False,
    one for all or one each) for flags, with an optional ``comment`` and ``user``. ``time``
    says when the truth was known (one time or one each; default: now). Everything is
    stored or, when one row is invalid, nothing (the error names it).
    """
    if (ids is None) == (keys is None):
        raise ValidationError("give ids (request ids) or keys (correlation keys), one of them")
    address = _list(ids if ids is not None else keys)
    n = len(address)
    if any(a is None or a == "" for a in address):
        raise ValidationError("ids and keys must all be given (no empty or missing value)")
    address_text: list[Optional[str]] = [str(a) for a in address]
    if (targets is None) == (good is None):
        raise ValidationError("give targets (labels) or good (flags), one of them")
    target_text: list[Optional[str]] = [None] * n
    target_number: list[Optional[float]] = [None] * n
    flags: list[Optional[bool]] = [None] * n
    if targets is not None:
        values = _list(targets)
        if len(values) != n:
            raise ValidationError(f"targets: {len(values)} values for {n} rows")
        for i, v in enumerate(values):
            if isinstance(v, (bool, np.bool_)):
                target_number[i] = float(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                if v != v:
                    raise ValidationError(f"targets: row {i} has no value (NaN)")
                target_number[i] = float(v)
            elif v is None:
                raise ValidationError(f"targets: row {i} has no value")
            else:
                target_text[i] = str(v)
    else:
        given = [good] * n if isinstance(good, (bool, np.bool_)) else _list(good)
        if len(given) != n:
            raise ValidationError(f"good: {len(given)} values for {n} rows")
        if not all(isinstance(g, (bool, np.bool_)) for g in given):
            raise ValidationError("good: each flag is True (a good answer) or False (a bad one)")
        flags = [bool(g) for g in given]
    reg = _registry(registry)
    return _core.log_feedback(
        reg._core,
        reg.actor,
        deployment,
        address_text if ids is not None else [None] * n,
        address_text if keys is not None else [None] * n,
        target_text,
        target_number,
        flags,
        _strings(comment, n, "comment"),
        _strings(user, n, "user"),
        _times(time, n),
    )


def read_feedback(
    deployment: str,
    *,
    since: When = None,
    until: When = None,
    kind: Optional[str] = None,
    good: Optional[bool] = None,
    registry: Registry | str | None = None,
) -> Any:
    """The feedback received on ``deployment`` in the period, oldest first, as a pandas
    DataFrame: ``id``, ``request_id``, ``key``, ``kind`` ("target" or "flag"), ``target``,
    ``good``, ``comment``, ``user``, ``time`` (when the truth was known), ``received`` and
    ``received_by``. ``kind`` and ``good`` filter."""
    import pandas as pd

    if kind not in (None, "target", "flag"):
        raise ValidationError(f"kind {kind!r}: 'target', 'flag' or None")
    reg = _registry(registry)
    columns = _core.feedback(
        reg._core,
        deployment,
        _since(since) if since is not None else None,
        _since(until) if until is not None else None,
        kind,
        good,
    )
    frame = pd.DataFrame(columns)
    for name in ("time", "received"):
        frame.insert(
            frame.columns.get_loc(f"{name}_us"),
            name,
            pd.to_datetime(frame.pop(f"{name}_us"), unit="us", utc=True),
        )
    return frame
