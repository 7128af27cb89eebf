"""What people look at: figures (``plots``, pure) and the one-file HTML report of a run (``report``)."""
