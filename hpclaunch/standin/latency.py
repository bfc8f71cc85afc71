"""How long the simulated engine takes, so a load sweep draws the curves a real server does.

A decode step with ``b`` requests in the batch takes ``step * (1 + b / saturation)``: one
request alone gets ``1 / step`` tokens/s, and an engine's total throughput
``b / (step * (1 + b / saturation))`` rises with the batch and flattens towards
``saturation / step``, as a GPU's does once it is compute-bound. Prefill costs ``prefill``
seconds per prompt token, slowed by the batch the same way. Past ``--max-num-seqs`` requests
wait for a slot (see :class:`hpclaunch.standin.simulation.Engines`), so time to first token
grows with the queue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyModel:
    """Seconds per decode step and per prompt token; all zero answers at once."""

    step: float = 0.0
    saturation: float = 16.0
    prefill: float = 0.0

    def slowdown(self, running: int) -> float:
        return 1.0 + max(0, running) / self.saturation

    def step_seconds(self, running: int) -> float:
        """One decode step while ``running`` requests share the batch."""
        return self.step * self.slowdown(running) if self.step > 0 else 0.0

    def prefill_seconds(self, prompt_tokens: int, running: int) -> float:
        if self.prefill <= 0:
            return 0.0
        return self.prefill * prompt_tokens * self.slowdown(running)
