"""The hand-written alternative: FastAPI + uvicorn + onnxruntime, one session per model, the
same Open Inference Protocol JSON in and out. Run by benchmarks/serving.py:

    BENCH_MODELS=logreg=/path/a.onnx,forest=/path/b.onnx uvicorn fastapi_app:app
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request

DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float64): "FP64",
}


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


SESSIONS = {
    name: _session(path)
    for name, path in (item.split("=", 1) for item in os.environ["BENCH_MODELS"].split(","))
}
app = FastAPI()


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request) -> dict:
    session = SESSIONS.get(name)
    if session is None:
        raise HTTPException(404, f"no model {name}")
    body = await request.json()
    feeds = {
        i["name"]: np.asarray(i["data"], dtype=np.float32).reshape(i["shape"])
        for i in body["inputs"]
    }
    outputs = session.run(None, feeds)
    return {
        "model_name": name,
        "model_version": "1",
        "outputs": [
            {
                "name": meta.name,
                "datatype": DATATYPES.get(value.dtype, "BYTES"),
                "shape": list(value.shape),
                "data": value.ravel().tolist(),
            }
            for meta, value in zip(session.get_outputs(), outputs)
        ],
    }
