"""Every saved student carries a model card, and loads with `transformers.pipeline` as its card says,
giving the label names and the scores `llmneo predict` gives."""

from __future__ import annotations

import json

import pytest
import yaml

from llmneo.inference import Predictor


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.slow
def test_the_students_card_has_the_hub_front_matter_and_the_runs_figures(tracked_run):
    card = (tracked_run.run_dir / "student" / "README.md").read_text()
    matter = front_matter(card)
    assert matter["library_name"] == "transformers" and matter["pipeline_tag"] == "text-classification"
    summary = json.loads((tracked_run.run_dir / "summary.json").read_text())
    metrics = json.loads((tracked_run.run_dir / "metrics.json").read_text())["final"]
    assert matter["model-index"][0]["results"][0]["metrics"][0]["value"] == round(metrics["accuracy"], 4)
    assert f"**{summary['speedup']:.1f}x faster**" in card  # the evaluate stage's timing, not a made-up one
    assert "- `0`: negative" in card and "- `1`: positive" in card and 'pipeline("text-classification"' in card


@pytest.mark.slow
def test_the_student_loads_with_transformers_pipeline_and_scores_as_llmneo_predict(tracked_run):
    from transformers import pipeline

    folder = tracked_run.run_dir / "student"
    texts = ["a gripping , beautifully acted film", "a dull and lifeless mess", "fine"]
    classify = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    results = classify(texts)
    predictions = Predictor.load(folder).predict(texts)
    for scored, prediction in zip(results, predictions):
        by_label = {entry["label"]: entry["score"] for entry in scored}
        assert set(by_label) == {"negative", "positive"}
        assert [by_label[name] for name in ("negative", "positive")] == pytest.approx(prediction.probs, abs=1e-5)
