"""An endpoint's life: launch (reserve, render, queue), observe (scheduler state, log, /health),
resolve by name, stop.

This is the layer fleets, benchmarks and evals build on; the CLI reaches it through
:mod:`hpclaunch.api`.
"""
