"""suggest: when the chosen layout cannot hold one full-length request, it shortens the
context to what vLLM's own start-up check would accept instead of suggesting 0 sequences."""

from __future__ import annotations

from hpclaunch.planning.suggest import suggest


def test_a_context_that_does_not_fit_is_shortened_never_zero_sequences() -> None:
    s = suggest("Qwen3-8B", gpu="RTX4090", gpus_per_node=1, context=40960)
    assert "does not fit" in " ".join(s.reasons)
    assert 0 < s.sets["max-model-len"] < 40960 and s.sets["max-model-len"] % 1024 == 0
    assert s.sets.get("max-num-seqs", 1) >= 1
