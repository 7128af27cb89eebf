"""HTTP routes, one module per concern; each talks to the ModelService through `deps`."""
