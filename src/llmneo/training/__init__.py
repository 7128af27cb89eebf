"""The training engine the teacher and distill stages share: building and adapting models (``models``),
the Trainer and its batches (``trainer``, ``batches``, ``callbacks``), distributed helpers
(``distributed``) and what every stage does alike (``stage``)."""
