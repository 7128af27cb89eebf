"""The teacher's signals on disk: ``store`` (keys, shards, checksums) and ``stage`` (what is computed, when)."""
