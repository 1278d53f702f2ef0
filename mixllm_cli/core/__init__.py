"""Numpy-only building blocks, no I/O beyond reading the encoder's files: the encoder run, features,
heads, the decision rule, the latency model, the projection and tagging maths. Imports nothing of
ours but `errors`."""
