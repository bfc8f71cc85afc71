"""From a model name and a preset to a checked plan.

Model facts, presets, the immutable :class:`~hpclaunch.planning.plan.Plan`, the KV and
capacity arithmetic that mirrors vLLM's, preflight rules, and ``suggest``. Pure logic:
nothing here talks to a scheduler or a network.
"""
