"""Pure maths: losses, metrics (the one softmax, the one ECE binning), decisions, FLOP and parameter
counts. Arrays or tensors in, numbers out; no file, network or MLflow I/O, and no other llmneo module."""
