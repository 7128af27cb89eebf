"""The distill stage: the student learns from the cached teacher signals and the gold labels."""
