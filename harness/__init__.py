"""Benchmark harness: dataset, workspaces, sandboxes, test runners, results, statistics."""
