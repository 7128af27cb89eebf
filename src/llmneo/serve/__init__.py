"""The inference service: FastAPI over `llmneo.inference.Predictor`, with micro-batching.

Run it with `llmneo serve MODEL` or `LLMNEO_MODEL=MODEL uvicorn llmneo.serve.app:app`; see
`llmneo.serve.settings.ServeSettings` for every LLMNEO_* variable.
"""
