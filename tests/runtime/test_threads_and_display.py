"""Many threads on one Model; the GIL is released while it runs; reprs for notebooks."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import pilothouse as ph


def test_eight_threads_give_the_serial_answers(
    forest: tuple[Path, np.ndarray], mlp: tuple[Path, np.ndarray]
) -> None:
    for path, X in (forest, mlp):
        model = ph.load_model(path)
        batches = [X[i : i + 1 + (i % 7)] for i in range(0, 48)]
        serial = [model.predict(b) for b in batches]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(5):
                concurrent = list(pool.map(model.predict, batches))
                for got, want in zip(concurrent, serial):
                    assert got.keys() == want.keys()
                    for k in want:
                        np.testing.assert_array_equal(got[k], want[k])
        assert 1 <= model._core.sessions <= model.options["max_sessions"]


def test_predict_releases_the_gil(model_dir: Path) -> None:
    import models

    path = model_dir / "big_forest.onnx"
    path.write_bytes(models.random_forest(n_estimators=150)[0])
    model = ph.load_model(path)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60_000, 4)).astype(np.float32)

    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.01)
    start_ticks = ticks
    started = time.perf_counter()
    model.predict(X)
    elapsed = time.perf_counter() - started
    during = ticks - start_ticks
    done.set()
    counter.join()
    # With the GIL held for the whole call the counter could not tick at all; released, it
    # ticks about once per millisecond of the call.
    assert elapsed > 0.05, "the call was too short to tell"
    assert during >= elapsed * 1000 * 0.2, (during, elapsed)


def test_repr_and_html(logreg: tuple[Path, Any], mixed: tuple[Path, Any]) -> None:
    model = ph.load_model(logreg[0])
    text = repr(model)
    assert "logreg.onnx" in text and "X: float32[None, 4]" in text
    assert "output_probability: float32[None, 2]" in text
    page = model._repr_html_()
    assert (
        "<table>" in page
        and "<code>X</code>" in page
        and "zipmap" in page
        and "classes: 0, 1" in page
    )
    spec = model.inputs[0]
    assert repr(spec) == "TensorSpec(name='X', dtype='float32', shape=[None, 4])"
    assert spec == ph.load_model(logreg[0]).inputs[0]
    pipeline = ph.load_model(mixed[0])
    assert "classes: churn, stay" in pipeline._repr_html_()
    assert 13 <= pipeline.opsets[""] <= 17  # skl2onnx picks the lowest opset that suffices
    assert pipeline.metadata == {}
    assert isinstance(model.to_bytes(), bytes) and model.to_bytes() == Path(logreg[0]).read_bytes()


def test_options_and_determinism(mlp: tuple[Path, np.ndarray]) -> None:
    path, X = mlp
    model = ph.load_model(path, deterministic=True, optimization="basic", max_sessions=1)
    assert model.options == {
        "intra_op_threads": 1,
        "inter_op_threads": 1,
        "optimization": "basic",
        "deterministic": True,
        "max_sessions": 1,
    }
    first = model.predict(X)["logits"]
    for _ in range(5):
        np.testing.assert_array_equal(model.predict(X)["logits"], first)
    fast = ph.load_model(path, intra_op_threads=2, optimization="all")
    np.testing.assert_allclose(fast.predict(X)["logits"], first, rtol=1e-5, atol=1e-6)
