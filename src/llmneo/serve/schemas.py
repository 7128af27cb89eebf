"""Request and response bodies of the HTTP API.

The `/predict` shape is the reference project's (`results`, `model`, `device`, `latency_ms`) with
`label` added to each result. The request model is built per app by `predict_request_model`, so the
limits in the OpenAPI schema are the ones the server enforces (and a fuzzer reading the schema
knows them).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, create_model

from llmneo.inference.texts import NOT_BLANK_PATTERN, check_text

__all__ = [
    "ErrorItem",
    "ErrorResponse",
    "HealthResponse",
    "InfoResponse",
    "PredictRequest",
    "PredictResponse",
    "PredictResult",
    "ValidationErrorResponse",
    "predict_request_model",
]


class PredictRequest(BaseModel):
    """The /predict body with the default limits; `predict_request_model` rebuilds it with the app's."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] = Field(
        ...,
        min_length=1,
        description="Texts to classify, one prediction each. Accepted texts longer than the model's "
        "max_length tokens are truncated by the tokenizer (the character limit is checked first).",
    )
    calibrate: StrictBool = Field(
        False, description="Divide logits by the model's fitted temperature (422 if it has none)."
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        strict=True,  # `true` is not a threshold
        allow_inf_nan=False,
        description="Binary models only: predict the positive (last) class when P(positive) >= threshold. "
        "Refused with 422 for models with more than two classes.",
    )


def _not_blank(text: str) -> str:
    if (problem := check_text(text, max_chars=len(text) or 1)) is not None:
        raise ValueError(problem)  # 422 with loc ["body", "texts", <index>]
    return text


def predict_request_model(max_texts: int, max_text_chars: int) -> type[PredictRequest]:
    """A PredictRequest whose `texts` carries this server's limits (count and characters per text); a blank
    text is refused as the CLI refuses it (`llmneo.inference.texts`), naming its index."""
    text = Annotated[StrictStr, Field(max_length=max_text_chars, json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
                     AfterValidator(_not_blank)]  # the pattern tells clients (and fuzzers) what _not_blank checks
    texts_field: Any = (
        list[text],  # type: ignore[valid-type]
        Field(..., min_length=1, max_length=max_texts, description=PredictRequest.model_fields["texts"].description),
    )
    return create_model("PredictRequest", __base__=PredictRequest, texts=texts_field)


class PredictResult(BaseModel):
    pred: int = Field(..., description="Index of the predicted class.")
    label: str = Field(..., description="Name of the predicted class.")
    probs: list[float] = Field(..., description="Probability of each class, in the order of /info labels.")


class PredictResponse(BaseModel):
    results: list[PredictResult]
    model: str = Field(..., description="Name of the served model.")
    device: str
    latency_ms: float = Field(..., description="Server-side time for this request, queueing included.")


class ErrorItem(BaseModel):
    """One problem with a request, as FastAPI reports validation errors; `loc` names the field (or the byte
    offset, or the header); `input` quotes at most the first 80 characters of what was sent."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """The body of every error answer (400, 401, 404, 405, 413, 415, 422, 503): one shape for all."""

    detail: list[ErrorItem]


ValidationErrorResponse = ErrorResponse  # 400 and 422 answers, under the name their OpenAPI entries used


class HealthResponse(BaseModel):
    status: str = Field(..., description="'ok' when serving, 'draining' while shutting down.")
    ready: bool = Field(..., description="The model is loaded and requests are accepted.")
    model: str
    uptime_s: float


class InfoResponse(BaseModel):
    """What /info reports; every model field comes from the folder's llmneo_model.json."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    source_run: str | None = Field(None, description="MLflow run id that produced the model.")
    source: str = Field(..., description="What the server was started with (path or MLflow URI).")
    kind: str
    student_base_model: str | None
    teacher_base_model: str | None
    parameters: dict[str, Any] | None
    lora_rank: int | None
    labels: list[str]
    device: str
    backend: str = Field(..., description="'onnx' or 'torch'.")
    quantization: str | None = Field(None, description="An ONNX model's quantisation ('int8' or 'none').")
    model_dir: str = Field(..., description="The model folder being served (for a run folder: the one picked).")
    threads: int = Field(..., description="Intra-op threads of the backend.")
    limits: dict[str, Any]
    calibration_temperature: float | None
    calibration: dict[str, Any] | None
    default_threshold: float | None = Field(None, description="Threshold on P(positive) used when none is sent.")
    metrics: dict[str, Any] | None = Field(None, description="The model's recorded dev metrics.")
