"""BentoML serving the same ONNX models with onnxruntime (run from its own virtualenv by
benchmarks/serving.py): ``bentoml serve bento_service:Model`` with BENCH_MODEL set."""

from __future__ import annotations

import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=1, traffic={"timeout": 60})
class Model:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"]
        )
        self.names = [o.name for o in self.session.get_outputs()]

    @bentoml.api
    def predict(self, X: list[list[float]]) -> dict:
        outputs = self.session.run(None, {"X": np.asarray(X, dtype=np.float32)})
        return {name: value.tolist() for name, value in zip(self.names, outputs)}
