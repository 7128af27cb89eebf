"""Training: models (``models``), the Trainer (``trainer``), the teacher and its logit cache
(``teacher``, ``cache``), distributed helpers (``distributed``) and the recipe (``pipeline``)."""
