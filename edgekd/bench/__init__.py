"""Bench: latency, throughput, accuracy and graph profile per model; budgets → verdicts."""
