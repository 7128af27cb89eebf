"""The evaluate stage: teacher and student side by side on dev (quality, size, speed)."""
