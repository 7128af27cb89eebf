"""The teacher: tuned on the labels (``tune``), run live (``live``), and what it gives beyond its logits
(``signals``, pooled hidden states for the loss terms that declare them)."""
