"""The benchmark's targets, judged as ratios within one run (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from llmneo.bench.measure import BenchResult

__all__ = ["Target", "check_targets"]


@dataclass
class Target:
    name: str
    measured: str
    passed: bool


def check_targets(results: list[BenchResult], peak_gflops: float) -> list[Target]:
    """The issue's four targets, as ratios within this one run."""
    by_name = {r.name: r for r in results}
    eager = by_name.get("student torch fp32")
    students = [r for r in results if r.role == "student"]
    targets: list[Target] = []
    ratios = {backend: by_name[f"student {backend}"].throughput / by_name[f"teacher {backend}"].throughput
              for backend in ("torch fp32", "onnx fp32")
              if f"student {backend}" in by_name and f"teacher {backend}" in by_name}
    if ratios:
        targets.append(Target("student throughput >= 3x teacher on the same backend (batch 32)",
                              ", ".join(f"{backend}: {ratio:.2f}x" for backend, ratio in ratios.items()),
                              max(ratios.values()) >= 3))
    if eager and students:
        fastest = min(students, key=lambda r: r.latency_p50_ms)
        speedup = eager.latency_p50_ms / fastest.latency_p50_ms
        change = (fastest.accuracy - eager.accuracy) * 100  # accuracy points, + when the fast one is better
        # "Within 0.5 points" guards against a loss: a backend that happens to score higher passes.
        targets.append(Target(f"best backend ({fastest.name}) >= 5x faster than torch eager fp32 at batch 1, "
                              "accuracy at most 0.5 points below eager",
                              f"{speedup:.2f}x, accuracy {change:+.2f} points vs eager",
                              speedup >= 5 and change >= -0.5))
        targets.append(Target("best single-sentence p50 < 5 ms", f"{fastest.latency_p50_ms:.2f} ms ({fastest.name})",
                              fastest.latency_p50_ms < 5))
    if students:
        busiest = max(students, key=lambda r: r.throughput)
        measured = f"{busiest.achieved_gflops:.1f} / {peak_gflops:.1f} GFLOP/s = {busiest.peak_share:.0%} ({busiest.name})"
        fp32 = [r for r in students if r.precision == "fp32" and r is not busiest]
        if busiest.precision == "int8" and fp32:  # int8 runs on integer units: give the like-for-like figure too
            best_fp32 = max(fp32, key=lambda r: r.throughput)
            measured += f"; best fp32: {best_fp32.peak_share:.0%} ({best_fp32.name})"
        targets.append(Target("best batched backend >= 40% of the fp32 matmul peak", measured,
                              busiest.peak_share >= 0.4))
    return targets
