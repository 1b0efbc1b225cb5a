"""MLServer custom runtime serving the project's .onnx with onnxruntime (``make bench-peers``).

Runs in its own throw-away virtual environment under .bench/, never in the project's.
Written the way MLServer's documentation shows a custom runtime: the request codecs decode
each input, one onnxruntime call, every output encoded back with the numpy codec.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

NUMERIC = ("carat",)


class OnnxPeer(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for inp in payload.inputs:
            if inp.name in NUMERIC:
                feeds[inp.name] = NumpyCodec.decode_input(inp).astype(np.float32).reshape(-1, 1)
            else:
                feeds[inp.name] = np.array(StringCodec.decode_input(inp), dtype=object).reshape(-1, 1)
        values = self.session.run(self.output_names, feeds)
        outputs = [
            NumpyCodec.encode_output(n, np.round(v.astype(np.float64), 2))
            for n, v in zip(self.output_names, values, strict=True)
        ]
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id, outputs=outputs)
