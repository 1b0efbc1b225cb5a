"""BentoML service with the same JSON body as ``POST /diamond_price``, over the project's .onnx
with onnxruntime (``make bench-peers``). Runs in its own throw-away virtual environment under
.bench/: ``PEER_MODEL=MODEL.onnx bentoml serve bentoml_peer:DiamondPeer --port N``."""

import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=1)
class DiamondPeer:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    @bentoml.api(route="/diamond_price")
    def diamond_price(self, carat: float, cut: str, color: str, clarity: str) -> dict:
        feeds = {"carat": np.array([[carat]], dtype=np.float32)}
        for name, value in (("cut", cut), ("color", color), ("clarity", clarity)):
            feeds[name] = np.array([[value]], dtype=object)
        values = [round(float(v[0][0]), 2) for v in self.session.run(self.output_names, feeds)]
        return {"price": values[0], "price_range": {"low": values[1], "high": values[2]}}
