"""The Predictor: caller's order kept, batching invisible, thresholds and calibration applied."""

import numpy as np
import pytest

from llmneo.inference import Predictor, resolve_model_dir
from llmneo.maths.metrics import softmax


def test_order_is_kept_and_batching_is_invisible(tiny_model_dir):
    predictor = Predictor.load(tiny_model_dir, backend="torch")
    texts = ["a long sentence that goes on and on about the film", "ok", "bad", "a fine film indeed"]
    together = predictor.predict_logits(texts, batch_size=2)
    alone = np.stack([predictor.predict_logits([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reversed_logits = predictor.predict_logits(texts[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_logits[::-1], together, atol=1e-5)


def test_predict_threshold_and_calibration(tiny_model_dir):
    predictor = Predictor.load(tiny_model_dir)
    assert predictor.backend_name == "torch" and predictor.labels == ["negative", "positive"]
    plain = predictor.predict(["great", "awful"])
    assert all(abs(sum(p.probs) - 1) < 1e-5 for p in plain)
    assert [p.pred for p in predictor.predict(["great", "awful"], threshold=0.0)] == [1, 1]
    assert [p.pred for p in predictor.predict(["great", "awful"], threshold=1.0 + 1e-9)] == [0, 0]
    calibrated = predictor.predict(["great"], calibrate=True)[0]
    logits = predictor.predict_logits(["great"])
    np.testing.assert_allclose(calibrated.probs, softmax(logits, 1.5)[0], atol=1e-6)


def test_resolve_model_dir_accepts_a_run_folder(tiny_model_dir, tmp_path):
    assert resolve_model_dir(tiny_model_dir.parent) == tiny_model_dir
    with pytest.raises(FileNotFoundError, match="llmneo_model.json"):
        resolve_model_dir(tmp_path)


def test_atomic_outputs_are_readable_by_others(tmp_path):
    """A model folder mounted into a container runs as another user: it must be world-readable."""
    from llmneo.atomic import atomic_dir, write_text_atomic

    with atomic_dir(tmp_path / "model") as temp:
        (temp / "weights").write_text("w")
        (temp / "weights").chmod(0o600)  # as save_pretrained leaves model.safetensors
    write_text_atomic(tmp_path / "meta.json", "{}")
    assert (tmp_path / "model").stat().st_mode & 0o005 == 0o005
    assert (tmp_path / "model" / "weights").stat().st_mode & 0o004 == 0o004
    assert (tmp_path / "meta.json").stat().st_mode & 0o004 == 0o004


def test_forward_passes_respect_batch_size_and_token_budget(tiny_model_dir):
    from llmneo.inference.predictor import _forward_passes

    lengths = [5, 40, 3, 10, 10, 60]
    passes = [list(p) for p in _forward_passes(lengths, batch_size=3, max_tokens=None)]
    assert passes == [[2, 0, 3], [4, 1, 5]]  # ascending token count, 3 rows at most
    budget = [list(p) for p in _forward_passes(lengths, batch_size=32, max_tokens=40)]
    assert budget == [[2, 0, 3, 4], [1], [5]]  # 4 rows x 10 tokens; 60 > 40 still runs, alone
    assert sorted(i for p in budget for i in p) == list(range(len(lengths)))
    predictor = Predictor.load(tiny_model_dir)
    texts = ["short", "a much longer sentence about a film that goes on and on and on", "mid length one"]
    np.testing.assert_allclose(predictor.predict_logits(texts, max_batch_tokens=8), predictor.predict_logits(texts),
                               atol=1e-5)


@pytest.mark.parametrize("source", ["tiny_model_dir", "tiny_llama_source"])
def test_json_tokenizer_gives_transformers_ids(source, request, sst2_dir):
    """The torch-free tokenizer of the ONNX path must give the very ids transformers gives."""
    from llmneo.data import read_labeled_head
    from llmneo.inference.tokenizer import JsonTokenizer
    from llmneo.modelfolder import load_tokenizer

    folder = request.getfixturevalue(source)
    texts = read_labeled_head(sst2_dir / "dev.tsv", ["negative", "positive"], 300).texts
    texts += ["word " * 400, "Génial 🎬", "", "  spaces  ", "\u00e9\u0301 accents"]
    reference = load_tokenizer(folder)
    ours = JsonTokenizer.from_folder(folder, max_length=48)
    assert ours.token_ids(texts) == reference(texts, truncation=True, max_length=48)["input_ids"]
    assert ours.pad_token_id == reference.pad_token_id
