"""Inference: the Predictor (tokenise, batch, restore order) over a torch or an ONNX backend.

Imports only the model-folder contract (``llmneo.modelfolder``) and the maths (``llmneo.maths``);
``export`` writes ONNX model folders that the ONNX backend runs.
"""

from llmneo.inference.predictor import Backend, Predictor
from llmneo.maths.decide import Prediction
from llmneo.modelfolder import resolve_model_dir

__all__ = ["Backend", "Prediction", "Predictor", "resolve_model_dir"]
