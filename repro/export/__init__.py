"""Putting repro's records where other tools look: `repro export mlflow` (export/mlflow.py).

plan.py decides what a run becomes elsewhere (pure: no client, no network); each tool's module
is the only one that imports that tool's client, lazily, from the command that needs it.
"""
