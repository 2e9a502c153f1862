"""Measurement scripts whose output the docs quote (run with ``python -m nnunet_ext.benchmarks.<name>``)."""
