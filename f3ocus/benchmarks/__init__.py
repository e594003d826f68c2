"""Benchmarks that reproduce the paper's tables (`f3ocus bench paper`)."""
