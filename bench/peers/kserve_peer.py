"""KServe Python model server (a ``kserve.Model``) serving the project's .onnx with onnxruntime
(``make bench-peers``): V2 infer (JSON and binary tensors) and V1 ``:predict``.

Runs in its own throw-away virtual environment under .bench/. Usage:
``python kserve_peer.py MODEL.onnx --http_port N``.
"""

import argparse

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse

FEATURES = ("carat", "cut", "color", "clarity")


class OnnxPeer(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def run(self, columns: dict) -> list:
        feeds = {"carat": np.asarray(columns["carat"], dtype=np.float32).reshape(-1, 1)}
        for name in FEATURES[1:]:
            values = [v.decode() if isinstance(v, bytes) else v for v in np.asarray(columns[name]).reshape(-1)]
            feeds[name] = np.array(values, dtype=object).reshape(-1, 1)
        return [np.round(v.astype(np.float64), 2) for v in self.session.run(self.output_names, feeds)]

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, InferRequest):
            values = self.run({i.name: i.as_numpy() for i in payload.inputs})
            outputs = []
            for name, v in zip(self.output_names, values, strict=True):
                out = InferOutput(name=name, shape=list(v.shape), datatype="FP32")
                out.set_data_from_numpy(v.astype(np.float32), binary_data=payload.use_binary_outputs)
                outputs.append(out)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=outputs,
                use_binary_outputs=payload.use_binary_outputs,
            )
        rows = payload["instances"]
        values = self.run({n: [r[n] for r in rows] for n in FEATURES})
        return {"predictions": [dict(zip(self.output_names, r, strict=True)) for r in np.hstack(values).tolist()]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--http_port", type=int, required=True)
    args, _ = parser.parse_known_args()
    kserve.ModelServer(http_port=args.http_port, workers=1, enable_grpc=False, enable_latency_logging=False).start(
        [OnnxPeer("diamond_price", args.model)]
    )
