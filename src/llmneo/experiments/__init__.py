"""Experiments over the pipeline, as data: the ablation (``ablation``, ``compare``), arms and students as YAML
(``arms``, ``presets/``), several seeds (``seeds``), and the student sweep (``sweep``, ``sweep_rows``)."""
