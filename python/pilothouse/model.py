"""In-process inference: :func:`load_model` and :class:`Model`.

This module owns loading an ONNX model into ONNX Runtime and running it. ``Model.predict``
takes numpy arrays, dicts of array-likes, pandas, polars and pyarrow data and returns a dict
of numpy arrays keyed by output name. The GIL is released while data is converted and the
model runs, so one ``Model`` serves many threads at once.

It does not import the registry, which builds on it: a ``models:/`` URI given to
:func:`load_model` goes to the registry ``pilothouse.registry`` hands over with
:func:`use_default_source` when it is imported (``import pilothouse`` imports it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Union

from pilothouse import _core, _html
from pilothouse._paths import is_model_uri
from pilothouse._runtime import ensure_runtime
from pilothouse.errors import InputError

__all__ = ["Model", "TensorSpec", "load_model"]

TensorSpec = _core.TensorSpec

PathLike = Union[str, "os.PathLike[str]"]

if TYPE_CHECKING:
    import numpy as np

    from pilothouse.drift import Profile
else:
    # numpy is bound when the first model loads: `import pilothouse` stays fast for
    # scripts that only talk to the registry.
    np = None

_FLOAT_DTYPES: dict[str, Any] = {}


def _bind_numpy() -> None:
    global np
    if np is None:
        import numpy

        _FLOAT_DTYPES.update(float16=numpy.float16, float32=numpy.float32, float64=numpy.float64)
        np = numpy


class Model:
    """An ONNX model loaded into ONNX Runtime.

    Create it with :func:`load_model`. ``inputs`` and ``outputs`` describe the signature;
    ``predict`` runs it. Outputs that skl2onnx classifiers emit as a sequence of
    ``{label: probability}`` maps (ZipMap) come back as a ``[rows, classes]`` float32 matrix
    whose column order is ``spec.labels`` of that output (see :meth:`labels`).
    """

    __slots__ = ("_core", "_frame_cache", "_single", "_specs")

    def __init__(self, core: _core.Model) -> None:
        _bind_numpy()
        self._core = core
        inputs = core.inputs
        self._single: str | None = inputs[0].name if len(inputs) == 1 else None
        self._specs = {s.name: s for s in inputs}
        # The last pandas Index seen and its plan: Index objects are immutable, and row
        # slices of one frame share theirs.
        self._frame_cache: tuple[Any, tuple[str, str, list[str] | None]] | None = None

    # -- signature -------------------------------------------------------------------------

    @property
    def inputs(self) -> list[_core.TensorSpec]:
        """The model's inputs: name, dtype and shape (None for a dynamic dimension)."""
        return self._core.inputs

    @property
    def outputs(self) -> list[_core.TensorSpec]:
        """The model's outputs; a "zipmap" output also carries its class ``labels``."""
        return self._core.outputs

    @property
    def feature_names(self) -> list[str] | None:
        """Column order recorded with the model (metadata ``pilothouse.feature_names``)."""
        return self._core.feature_names

    @property
    def metadata(self) -> dict[str, str]:
        """The ONNX file's metadata properties."""
        return dict(self._core.metadata)

    @property
    def opsets(self) -> dict[str, int]:
        """Opset versions the model imports, by domain ('' is the ONNX default domain)."""
        return dict(self._core.opsets)

    @property
    def path(self) -> str:
        """Where the model was loaded from."""
        return self._core.path

    @property
    def options(self) -> dict[str, Any]:
        """The session options in force."""
        return dict(self._core.options)

    def labels(self, output: str | None = None) -> list[Any] | None:
        """Class labels of a probability-map output (the first such output by default)."""
        for spec in self.outputs:
            if spec.kind == "zipmap" and (output is None or spec.name == output):
                return spec.labels
        if output is not None and output not in {s.name for s in self.outputs}:
            raise KeyError(f"the model has no output {output!r}")
        return None

    def to_bytes(self) -> bytes:
        """The serialised ONNX model."""
        return self._core.to_bytes()

    # -- inference -------------------------------------------------------------------------

    def predict(self, data: Any, /) -> dict[str, np.ndarray]:
        """Run the model and return every output as a numpy array, keyed by output name.

        ``data`` is one of:

        * a numpy array (or nested list), for a model with a single input;
        * a dict of input name -> array-like;
        * a pandas, polars or pyarrow table (``pa.Table`` or ``pa.RecordBatch``, or any object
          with ``__arrow_c_stream__`` / ``__arrow_c_array__``). Its columns feed one model input
          each by name when the model has one input per feature; otherwise they are stacked
          into the single 2-D input, in the model's recorded feature order when there is one.

        Numbers are cast to the model's type when no surprise can come of it (to any float
        width, rounding; between integer widths when every value fits); floats are never
        silently made integers, and strings never mix with numbers. Outputs keep the model's
        type: float16 and bfloat16 (``ml_dtypes.bfloat16``) included; string outputs are
        ``str`` objects, or ``bytes`` when they are not UTF-8.
        """
        core = self._core
        if isinstance(data, np.ndarray):
            if self._single is None:
                raise self._needs_dict(type(data).__name__)
            return core.run_single(data)
        if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
            return core.run(self._pandas_inputs(data))
        if isinstance(data, Mapping):
            return core.run({str(k): _as_array(str(k), v) for k, v in data.items()})
        if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__"):
            return core.run_arrow(data)
        if isinstance(data, (list, tuple)):
            if self._single is None:
                raise self._needs_dict(type(data).__name__)
            return core.run({self._single: _as_array(self._single, data)})
        raise InputError(
            f"cannot feed {type(data).__module__}.{type(data).__name__} to the model; pass a "
            "numpy array, a dict of name -> array, or a pandas, polars or pyarrow table"
        )

    __call__ = predict

    def reference_profiles(self, data: Any, /) -> tuple[Profile, Profile]:
        """The profiles monitoring compares served traffic with: of ``data`` as the model
        sees it (one column per feature, named as the model records them) and of the
        model's outputs on it (class labels as categories). ``data`` takes the forms
        :meth:`predict` takes."""
        from pilothouse.drift import Profile

        inputs, outputs = self._core.profile_io(self._input_arrays(data))
        return Profile(inputs), Profile(outputs)

    def _input_arrays(self, data: Any) -> dict[str, np.ndarray]:
        """``data`` as the named arrays :meth:`predict` would feed (other tables through
        their ``to_pandas``)."""
        if isinstance(data, np.ndarray | list | tuple):
            if self._single is None:
                raise self._needs_dict(type(data).__name__)
            return {self._single: _as_array(self._single, data)}
        if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
            return self._pandas_inputs(data)
        if isinstance(data, Mapping):
            return {str(k): _as_array(str(k), v) for k, v in data.items()}
        if hasattr(data, "to_pandas"):
            return self._pandas_inputs(data.to_pandas())
        raise InputError(
            f"cannot feed {type(data).__module__}.{type(data).__name__} to the model; pass a "
            "numpy array, a dict of name -> array, or a pandas, polars or pyarrow table"
        )

    def _needs_dict(self, given: str) -> InputError:
        names = ", ".join(s.name for s in self.inputs)
        return InputError(
            f"the model has {len(self.inputs)} inputs ({names}); a single {given} cannot feed "
            "them: pass a dict of input name -> array, or a table with those columns"
        )

    def _frame_plan(self, index: Any) -> tuple[str, str, list[str] | None]:
        """How a frame with these columns feeds the model: ("stack", input, order or None
        when the frame's own order is right) or ("by_name", "", inputs)."""
        single = self._single
        if single is not None and self.feature_names is None:
            # No names are needed: the columns stack in the frame's order. Reading a pandas
            # Index's names costs more than a small prediction, so only count them.
            k = self._core.inputs[0].shape
            if len(k) == 2 and k[1] is not None and len(index) != k[1]:
                self._core.plan_columns([str(c) for c in index])  # raises the InputError
            if len(index) == 0:
                self._core.plan_columns([])
            return ("stack", single, None)
        names = [str(c) for c in index.tolist()]
        how, input_name, order = self._core.plan_columns(names)
        if how == "stack":
            return (how, input_name, None if order == names else order)
        return (how, input_name, order)

    def _pandas_inputs(self, frame: Any) -> dict[str, np.ndarray]:
        index = frame.columns
        cached = self._frame_cache
        if cached is not None and cached[0] is index:
            how, input_name, names = cached[1]
        else:
            how, input_name, names = plan = self._frame_plan(index)
            self._frame_cache = (index, plan)
        specs = self._specs
        if how == "stack":
            spec = specs[input_name]
            block = frame if names is None else frame[names]
            target = _FLOAT_DTYPES.get(spec.dtype)
            values = _single_block(block)
            if values is None:
                values = block.to_numpy()
            if values.dtype.kind not in "biuf" and spec.dtype != "string":
                # nullable extension columns come out as objects holding pd.NA
                values = self._stack_with_missing(block, input_name, spec.dtype, target)
            return {input_name: values}
        out = {}
        for name in names or ():
            series = frame[name]
            target = _FLOAT_DTYPES.get(specs[name].dtype)
            if target is not None and getattr(series.dtype, "kind", "O") in "biuf":
                out[name] = series.to_numpy(dtype=target, na_value=np.nan)
            elif specs[name].dtype == "string":
                if series.isna().any():
                    raise InputError(
                        f"input '{name}': column '{name}' has {int(series.isna().sum())} missing "
                        "values, but the model's string input cannot hold them"
                    )
                out[name] = series.astype(object).to_numpy()
            else:
                out[name] = series.to_numpy()
        return out

    @staticmethod
    def _stack_with_missing(block: Any, input_name: str, dtype: str, target: Any) -> np.ndarray:
        """The slow path: nullable columns (pd.NA) become NaN; text columns are an error."""
        try:
            if target is None:
                raise TypeError("the model's input is not a float type")
            values: np.ndarray = block.to_numpy(dtype=target, na_value=np.nan)
            return values
        except (TypeError, ValueError) as e:
            bad = [
                str(c)
                for c, t in zip(block.columns, block.dtypes)
                if getattr(t, "kind", "O") not in "biuf"
            ]
            raise InputError(
                f"input '{input_name}': columns {bad} are not numeric, but the model "
                f"expects {dtype} ({e})"
            ) from None

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        def fmt(specs: Sequence[_core.TensorSpec]) -> str:
            return ", ".join(f"{s.name}: {s.dtype}{_shape(s.shape)}" for s in specs)

        return f"Model({self.path!r}, inputs=[{fmt(self.inputs)}], outputs=[{fmt(self.outputs)}])"

    def _repr_html_(self) -> str:
        def rows(specs: Sequence[_core.TensorSpec], role: str) -> list[list[object]]:
            out: list[list[object]] = []
            for s in specs:
                extra = ""
                if s.labels is not None:
                    shown = ", ".join(map(str, s.labels[:10]))
                    more = ", …" if len(s.labels) > 10 else ""
                    extra = f"classes: {shown}{more}"
                code = _html.Html(f"<code>{_html.escape(s.name)}</code>")
                out.append([role, code, s.dtype, _shape(s.shape), s.kind, extra])
            return out

        head = ("", "name", "dtype", "shape", "kind", "")
        body = rows(self.inputs, "input") + rows(self.outputs, "output")
        return _html.box(
            "pilothouse Model",
            _html.Html(f" <code>{_html.escape(self.path)}</code>"),
            _html.table(head, body),
            class_="pilothouse-model",
        )


def _single_block(frame: Any) -> np.ndarray | None:
    """The frame's values without a copy when they sit in one numpy block, else None.

    This is what ``DataFrame.to_numpy`` returns in that case, read the way pandas itself reads
    it, minus a microsecond or two of checks that dominate a one-row prediction. Anything
    else (several blocks, extension dtypes, a pandas without block managers) takes the public
    ``to_numpy`` path.
    """
    try:
        blocks = frame._mgr.blocks
    except AttributeError:
        return None
    if len(blocks) != 1:
        return None
    values = blocks[0].values
    if type(values) is not np.ndarray or values.ndim != 2:
        return None
    transposed: np.ndarray = values.T
    return transposed


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def _as_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "to_numpy"):
        return np.asarray(value.to_numpy())
    try:
        return np.asarray(value)
    except ValueError as e:
        raise InputError(f"input '{name}': the data is ragged or malformed ({e})") from None


class ModelSource(Protocol):
    """Where ``models:/`` URIs are loaded from: a :class:`pilothouse.Registry`."""

    def load_model(self, uri: str, **options: Any) -> Model: ...


_default_source: Callable[[], ModelSource] | None = None


def use_default_source(source: Callable[[], ModelSource]) -> None:
    """Set how :func:`load_model` finds the registry for a ``models:/`` URI.

    ``pilothouse.registry`` passes its ``default_registry`` when it is imported, so that this
    module, which the registry builds on, never imports the registry back."""
    global _default_source
    _default_source = source


def default_source() -> ModelSource:
    """The registry ``models:/`` URIs load from (the one ``ph.connect()`` opened last)."""
    if _default_source is None:  # pragma: no cover - `import pilothouse` sets it
        raise RuntimeError("models:/ URIs need the registry: import pilothouse first")
    return _default_source()


def load_model(
    path: PathLike,
    *,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    optimization: str = "all",
    deterministic: bool = False,
    max_sessions: int | None = None,
) -> Model:
    """Load an ONNX model for in-process inference, from a file or from the registry
    (``models:/churn/3``, ``models:/churn@champion``, ``models:/churn/latest``).

    The defaults suit many concurrent callers: each ONNX Runtime session runs on one thread,
    and up to one session per core is opened as threads need them (``max_sessions``). For
    one caller with large batches, raise ``intra_op_threads`` and set ``max_sessions=1``.
    ``deterministic=True`` gives identical answers run after run (one thread per operator,
    ONNX Runtime's deterministic kernels). ``optimization`` is "disable", "basic",
    "extended" or "all".
    """
    if is_model_uri(path):
        return default_source().load_model(
            str(path),
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
            optimization=optimization,
            deterministic=deterministic,
            max_sessions=max_sessions,
        )
    ensure_runtime()
    core = _core.Model.load(
        os.fspath(path),
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        optimization=optimization,
        deterministic=deterministic,
        max_sessions=max_sessions,
    )
    return Model(core)
