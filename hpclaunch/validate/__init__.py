"""Checking what users write, once, at the edge.

``schema``: the typed shapes of clusters.yaml and presets (msgspec), with one-line errors
that name the field's path. ``units``: the one rule for each kind of value (time limits,
memory, counts, fractions, names), shared by files, ``--set`` and flags.
"""
