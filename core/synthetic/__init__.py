"""A model-free learning curve with a known effect structure (tests and benchmarks)."""
