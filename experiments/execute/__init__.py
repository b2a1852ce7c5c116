"""Executing a plan: the runner, its executors, one task in a worker, progress and
held-out evaluation of the agents' reward models."""
