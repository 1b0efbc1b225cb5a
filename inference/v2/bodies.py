"""Bodies of the Open Inference Protocol (KServe V2) REST API, as pydantic models.

Unknown top-level and per-tensor fields are ignored, as the protocol allows (clients send e.g.
``model_name``); class docstrings are the ``/openapi.json`` descriptions."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Parameter = StrictBool | StrictInt | StrictFloat | StrictStr
"""A parameter value: a JSON string, number or boolean."""

Parameters = dict[str, Parameter]

_EXAMPLE_REQUEST: dict[str, Any] = {
    "id": "42",
    "inputs": [
        {"name": "carat", "shape": [2, 1], "datatype": "FP32", "data": [0.7, 1.01]},
        {"name": "cut", "shape": [2, 1], "datatype": "BYTES", "data": ["Ideal", "Premium"]},
        {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": ["G", "E"]},
        {"name": "clarity", "shape": [2, 1], "datatype": "BYTES", "data": ["VS2", "SI1"]},
    ],
    "outputs": [{"name": "price", "parameters": {"binary_data": False}}],
}


class ServerLive(BaseModel):
    """``GET /v2/health/live``."""

    live: bool


class ServerReady(BaseModel):
    """``GET /v2/health/ready``: ready while a model is loaded."""

    ready: bool


class ModelReady(BaseModel):
    """``GET /v2/models/{model_name}/ready``."""

    name: str
    ready: bool


class ServerMetadata(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions this server supports.")


class TensorMetadata(BaseModel):
    """One input or output of the model."""

    name: str
    datatype: str = Field(description="FP32 or BYTES (UTF-8 strings).")
    shape: list[int] = Field(description="-1 marks the batch dimension.")


class ModelMetadata(BaseModel):
    """``GET /v2/models/{model_name}``."""

    name: str
    versions: list[str] = Field(description="The version serving now; no other can be requested.")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    """One input tensor: ``[N]`` or ``[N, 1]``, its values in ``data`` or, with ``binary_data_size``
    in ``parameters``, in the body after the JSON (binary tensor data extension)."""

    model_config = ConfigDict(extra="ignore")
    name: StrictStr
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    datatype: StrictStr
    parameters: Parameters | None = None
    data: list[Any] | None = Field(default=None, description="Row-major values, flat or nested by shape.")


class RequestOutput(BaseModel):
    """An output to return; ``binary_data`` chooses binary over JSON for it."""

    model_config = ConfigDict(extra="ignore")
    name: StrictStr
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """An inference request: every model input, once."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [_EXAMPLE_REQUEST]})
    id: StrictStr | None = Field(default=None, description="Echoed back in the response.")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_output: true` returns every output as binary data."
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(default=None, description="Omitted or empty: every output.")


class ResponseOutput(BaseModel):
    """One output tensor: values in ``data``, or after the JSON as binary data."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size` when the values follow the JSON as binary data."
    )
    data: list[float] | None = Field(default=None, description="Prices in USD, rounded to cents.")


class InferenceResponse(BaseModel):
    """The prices, and the model and version that computed them."""

    model_name: str
    model_version: str
    id: str | None = Field(default=None, description="The request's `id`, when it had one.")
    outputs: list[ResponseOutput]
