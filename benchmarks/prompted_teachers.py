"""The local LLMs as prompted teachers: accuracy, macro F1 and ECE on each task's dev, zero-shot and k-shot,
raw and calibrated, and their speed here.

    make llms && python benchmarks/prompted_teachers.py --out benchmarks/prompted-teachers.md

Per model, task and k: k labelled examples per class in the prompt (seeded, from the training split, never
dev); the class scores as the teacher computes them in a run (`llmneo.teacher.prompted`); then three readings
of the same scores: raw, contextual calibration (content-free inputs), and a temperature and bias fitted on
100 labelled training rows that are not shots. Speed is dev texts per second through the raw scoring,
prompt cache on, counted per CPU-second of the process (with --threads 1, per core): a shared machine's
wall clock says more about its other jobs than about the model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmneo.data import read_labeled_file, stratified_subsample
from llmneo.maths.metrics import classification_metrics, expected_calibration_error, softmax
from llmneo.teacher.prompted import PromptedTeacher, contextual_offsets, fit_temperature_and_bias, pick_shots

DATA = Path("../shared/data")
TASKS = {
    "sst2": {"labels": ["negative", "positive"],
             "instruction": "Classify the sentiment of the movie review as negative or positive.",
             "words": [[" negative"], [" positive"]]},
    "sst5": {"labels": ["very negative", "negative", "neutral", "positive", "very positive"],
             "instruction": "Rate the sentiment of the movie review as very negative, negative, neutral, positive "
                            "or very positive.",
             "words": [[" very negative"], [" negative"], [" neutral"], [" positive"], [" very positive"]]},
    "trec6": {"labels": ["DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"],
              "instruction": "What does the question ask for: a description, an entity, an abbreviation, a human, a "
                             "location or a number?",
              "words": [[" description"], [" entity"], [" abbreviation"], [" human", " person"],
                        [" location", " place"], [" number"]],
              "template": "Question: {text}", "answer": "Answer type:", "chat_answer": "It asks for"},
}
MODELS = {"smollm2": ("models/smollm2-135m-instruct", True), "gemma": ("models/gemma-3-270m", False)}


def prompt_for(task: dict, chat: bool) -> tuple[str, str]:
    """(template, answer prefix): chat puts the answer in the assistant's turn, plain text after a newline."""
    template = task.get("template", "Review: {text}")
    if chat:
        return template, " " + task.get("chat_answer", "The sentiment is").strip()
    return template + "\n" + task.get("answer", "Sentiment:"), ""


def figures(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    probs = softmax(logits)
    metrics = classification_metrics(labels, probs)
    return {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"],
            "ece": expected_calibration_error(labels, probs)}


def measure(model_name: str, task_name: str, shots: int, fit_rows: int = 100, seed: int = 42,
            max_dev: int | None = None) -> dict:
    from transformers import AutoModelForCausalLM

    from llmneo.modelfolder import load_tokenizer

    folder, chat = MODELS[model_name]
    task = TASKS[task_name]
    train = read_labeled_file(DATA / task_name / "train.tsv", task["labels"])
    dev = read_labeled_file(DATA / task_name / "dev.tsv", task["labels"])
    if max_dev:
        dev = stratified_subsample(dev, max_dev, seed)
    chosen = pick_shots(train, shots, len(task["labels"]), seed) if shots else []
    used = {text for text, _ in chosen}
    rest = train.subset([i for i, text in enumerate(train.texts) if text not in used])
    fit = stratified_subsample(rest, fit_rows, seed)
    template, answer = prompt_for(task, chat)
    model = AutoModelForCausalLM.from_pretrained(folder)
    teacher = PromptedTeacher(model, load_tokenizer(folder), task["labels"], task["words"], template,
                              task["instruction"], answer, chat, chosen, max_length=96)
    started, cpu_started = time.perf_counter(), time.process_time()
    raw = teacher.raw_logits(dev.texts, batch_size=8, label=f"{model_name} {task_name} {shots}-shot")
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    labels = np.asarray(dev.labels)
    contextual = raw - contextual_offsets(teacher.raw_logits(["N/A", "", "[MASK]"]))
    temperature, bias = fit_temperature_and_bias(np.asarray(fit.labels), teacher.raw_logits(fit.texts))
    return {"model": model_name, "task": task_name, "shots": shots, "dev": len(dev), "prompt_tokens":
            len(teacher.prefix_ids), "texts_per_s": len(dev) / seconds,
            "texts_per_cpu_s": len(dev) / cpu_seconds, "raw": figures(labels, raw),
            "contextual": figures(labels, contextual), "fit": figures(labels, raw / temperature + bias)}


def markdown(rows: list[dict]) -> str:
    lines = [("| model | task | shots | accuracy raw | contextual | fit | macro F1 raw | contextual | fit | "
             "ECE raw | contextual | fit | texts per CPU-second |"), "|" + " --- |" * 13]
    for r in rows:
        cells = [f"{r[c]['accuracy']:.4f}" for c in ("raw", "contextual", "fit")]
        cells += [f"{r[c]['f1_macro']:.4f}" for c in ("raw", "contextual", "fit")]
        cells += [f"{r[c]['ece']:.3f}" for c in ("raw", "contextual", "fit")]
        lines.append(f"| {r['model']} | {r['task']} | {r['shots']} | " + " | ".join(cells) +
                     f" | {r['texts_per_cpu_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--shots", nargs="+", type=int, default=[0, 1, 4])
    parser.add_argument("--max-dev", type=int, default=None, help="A stratified part of dev (all of it by default).")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/prompted-teachers.md"))
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results_path = args.out.with_suffix(".json")
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["model"], r["task"], r["shots"]) for r in rows}
    for model in args.models:
        for task in args.tasks:
            for shots in args.shots:
                if (model, task, shots) in done:
                    continue
                rows.append(measure(model, task, shots, max_dev=args.max_dev))
                results_path.write_text(json.dumps(rows, indent=1))  # resumable: a finished row is kept
                args.out.write_text(markdown(rows))
                print(markdown(rows[-1:]), flush=True)


if __name__ == "__main__":
    main()
