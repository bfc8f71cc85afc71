"""How vLLM fits recurrent-layer state (Mamba2, gated delta nets) into the paged KV pool.

Hybrid models (Qwen3-Next / Qwen3.5 with gated-delta-net "linear attention", Nemotron-H with
Mamba2) keep one fixed-size state per request in each recurrent layer. vLLM (0.33:
``Platform._align_hybrid_block_size``; before ~0.20 the same code lived in
``HybridAttentionMambaModelConfig``) draws those states from the same block pool as the
attention KV, so every page must have one size:

1. the attention block size is raised to the smallest multiple of the kernel alignment
   (16 tokens) whose attention page holds one layer's state ("Setting attention block size
   to N tokens to ensure that attention page size is >= mamba page size");
2. the state page is padded up to that attention page ("Padding mamba page size by X%").

The layers are then grouped as for sliding windows (recurrent layers form groups like any
other kind), and a request takes, in each recurrent group, a fixed number of blocks: one
without prefix caching (mamba cache mode "none"); with prefix caching (mode "align") two, and
in 0.33 a third for the prefill checkpoint where the kernel exports one (Mamba2 always; a
gated delta net on FlashInfer's prefill kernel, i.e. Hopper), which also aligns blocks to 64.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm

from hpclaunch.planning.modelinfo import RecurrentState

__all__ = ["HybridBlocks", "hybrid_blocks", "prefix_caching_default",
           "prefix_caching_supported"]

_KERNEL_ALIGNMENT = 16  # smallest kernel block of FlashAttention / FlashInfer on CUDA
_GDN_FLASHINFER_ALIGNMENT = 64  # FLASHINFER_GDN_CHECKPOINT_ALIGNMENT (0.33)


def _version(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return (0, 33)
    return (major, minor)


def prefix_caching_supported(version: str) -> bool:
    """Whether ``version`` can cache prefixes of a hybrid model at all.

    0.10.2 and 0.13 logs print "Hybrid or mamba-based model detected ... disabling" even
    when ``--enable-prefix-caching`` is given; the mamba cache mode "align" came later. The
    first version that accepts it is not pinned down here: assumed 0.14.
    """
    return _version(version) >= (0, 14)


def prefix_caching_default(version: str) -> bool:
    """Whether vLLM turns prefix caching on for a hybrid model when no flag says.

    0.33's ``is_prefix_caching_supported`` says yes for generative hybrid models (a 0.28 log
    shows "Mamba cache mode is set to 'align' ... by default"); 0.19 logs show
    ``enable_prefix_caching=False``. The switch lies between; assumed at 0.24.
    """
    return _version(version) >= (0, 24)


@dataclass(frozen=True)
class HybridBlocks:
    """The block geometry vLLM settles on for a hybrid model."""

    block_size: int  # tokens per attention block, after the raise
    state_page: int  # one recurrent layer's state, before padding
    page: int  # one layer's page, attention and padded state alike
    state_blocks: int  # blocks one request holds in each recurrent group
    mode: str  # mamba cache mode: "none" | "align"
    steps: tuple[str, ...]

    @property
    def padding_pct(self) -> float:
        return 100 * (self.page - self.state_page) / self.state_page


def hybrid_blocks(state: RecurrentState, *, tp: int, token_bytes: int, block_size: int,
                  version: str, prefix_caching: bool | None,
                  hopper: bool = False) -> HybridBlocks:
    """Attention block size, padded page and blocks per request, as ``version`` sets them.

    ``token_bytes`` is one attention layer's K and V for one token on one GPU; ``hopper``
    says the GPU is SM90, where 0.33 runs the gated delta net's prefill on FlashInfer.
    """
    v = _version(version)
    caching = prefix_caching_default(version) if prefix_caching is None else prefix_caching
    refused = caching and not prefix_caching_supported(version)
    caching = caching and not refused
    mode = "align" if caching else "none"
    state_page = state.page_bytes(tp)
    alignment = max(_KERNEL_ALIGNMENT, block_size)
    checkpoint_block = False
    if mode == "align" and v >= (0, 33):
        checkpoint_block = state.kind == "mamba2" or hopper
        if state.kind == "gdn" and hopper:
            alignment = lcm(alignment, _GDN_FLASHINFER_ALIGNMENT)
    raised = alignment * -(-state_page // (alignment * token_bytes))
    new_block = max(block_size, raised)
    page = new_block * token_bytes
    blocks = (1 if mode == "none" else 2) + (1 if checkpoint_block else 0)
    steps = [
        f"{state.kind} state per recurrent layer on one GPU = {state_page:,} B (conv "
        f"{state.heads * state.head_dim} + 2 x {state.groups} x {state.state} channels / TP "
        f"{tp} x {state.conv_kernel - 1} steps x {state.conv_bytes} B + SSM {state.heads} / "
        f"TP x {state.head_dim} x {state.state} x {state.ssm_bytes} B)",
        (f"attention block size raised to {new_block} tokens ({alignment}-token alignment) so "
         if new_block > block_size else f"attention block size {new_block} tokens kept: ")
        + f"one attention page ({new_block} x {token_bytes:,} B = {page:,} B) holds a state; "
        f"the state page is padded by {100 * (page - state_page) / state_page:.2f} % to match",
        f"prefix caching {'on' if caching else 'off'}"
        + (f" (vLLM {version} turns it off for hybrid models)" if refused else "")
        + f" (mamba cache mode '{mode}'): a request "
        f"holds {blocks} block(s) in each recurrent group"
        + (" (two states + the prefill checkpoint)" if checkpoint_block
           else " (current + last cached state)" if mode == "align" else ""),
    ]
    return HybridBlocks(block_size=new_block, state_page=state_page, page=page,
                        state_blocks=blocks, mode=mode, steps=tuple(steps))
