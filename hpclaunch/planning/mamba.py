"""How vLLM fits recurrent-layer state (Mamba2, gated delta nets) into the paged KV pool.

Hybrid models (Qwen3-Next / Qwen3.5 with gated-delta-net "linear attention", Nemotron-H with
Mamba2) keep a fixed-size state per request in each recurrent layer. vLLM draws those states
from the same block pool as the attention KV, so every page must have one size
(``HybridAttentionMambaModelConfig`` up to ~0.20, ``Platform._align_hybrid_block_size``
after):

1. the attention block size is raised to the smallest multiple of the kernel alignment
   (16 tokens) whose attention page holds one layer's state ("Setting attention block size
   to N tokens to ensure that attention page size is >= mamba page size");
2. the state page is padded up to that attention page ("Padding mamba page size by X%").

Recurrent layers are then grouped like any other kind, and what a request takes in a
recurrent group depends on the mamba cache mode, which prefix caching selects:

- ``none`` (no prefix caching): one block, the current state;
- ``align`` (gated delta nets from ~0.17, every hybrid in 0.33): two blocks, the current and
  the last cached state; 0.33 adds one for the prefill checkpoint where the kernel exports
  one (Mamba2 always; a gated delta net on FlashInfer's prefill, i.e. H100/H200, which also
  aligns blocks to 64 tokens);
- ``all`` (Mamba2 models up to ~0.29): one state per block of the request, like attention,
  with blocks rounded to a multiple of the Mamba2 chunk size.

Version boundaries come from the sources of 0.10.0, 0.13.0, 0.20.0, 0.25.0 and 0.33.0 (and
real logs of 0.13 and 0.24, tests/data/planner/cases.json); a version in between follows the
nearer checked one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import lcm

from hpclaunch.planning.modelinfo import RecurrentState

__all__ = ["HybridBlocks", "hybrid_blocks", "max_num_seqs_problem", "prefix_caching_default",
           "with_state_dtypes"]

_KERNEL_ALIGNMENT = 16  # smallest kernel block of FlashAttention / FlashInfer on CUDA
_GDN_FLASHINFER_ALIGNMENT = 64  # FLASHINFER_GDN_CHECKPOINT_ALIGNMENT (0.33)
_DEFAULT_CHUNK = 256  # Mamba2 chunk size when the config gives none (Nemotron-H's value)


def _version(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return (0, 33)
    return (major, minor)


def prefix_caching_default(version: str) -> bool:
    """Whether vLLM turns prefix caching on for a hybrid model when no flag says.

    0.33's ``is_prefix_caching_supported`` says yes for generative hybrid models; 0.13's,
    0.20's and 0.25's say "Hybrid models do not support prefix caching since the feature is
    still experimental".
    """
    return _version(version) >= (0, 27)


_STATE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def with_state_dtypes(state: RecurrentState, mamba_cache_dtype: str,
                      mamba_ssm_cache_dtype: str) -> tuple[RecurrentState, str]:
    """``state`` under ``--mamba-cache-dtype`` / ``--mamba-ssm-cache-dtype``, and a step.

    vLLM's ``MambaStateDtypeCalculator``: the conv state takes ``mamba_cache_dtype`` ("auto":
    the model dtype); the SSM state takes ``mamba_ssm_cache_dtype``, and under "auto" the
    conv state's dtype, or the model's own hook (Qwen3.5's ``mamba_ssm_dtype``, Nemotron-H's
    ``mamba_ssm_cache_dtype``, already in ``state``) when neither flag is given.
    """
    conv = _STATE_BYTES.get(mamba_cache_dtype, state.conv_bytes)
    ssm = _STATE_BYTES.get(mamba_ssm_cache_dtype,
                           conv if mamba_cache_dtype in _STATE_BYTES else state.ssm_bytes)
    if (conv, ssm) == (state.conv_bytes, state.ssm_bytes):
        return state, ""
    return (replace(state, conv_bytes=conv, ssm_bytes=ssm),
            f"--mamba-cache-dtype {mamba_cache_dtype} / --mamba-ssm-cache-dtype "
            f"{mamba_ssm_cache_dtype}: conv state {conv} B, SSM state {ssm} B per element")


def _mode(state: RecurrentState, version: str, caching: bool) -> tuple[str, str]:
    """The mamba cache mode ``version`` runs, and why when it is not what was asked."""
    v = _version(version)
    if not caching:
        return "none", ""
    if state.kind == "mamba2" and v < (0, 30):
        # Mamba2 models implement SupportsMambaPrefixCaching: 0.13 caches one state per
        # block; 0.20 and 0.25 call that mode "all". 0.33 has only "align".
        return "all", ""
    if state.kind == "gdn" and v < (0, 17):
        return "none", (f"vLLM {version} turns prefix caching off for this model (\"Hybrid or "
                        "mamba-based model detected without support for prefix caching\")")
    return "align", ""


@dataclass(frozen=True)
class HybridBlocks:
    """The block geometry vLLM settles on for a hybrid model."""

    block_size: int  # tokens per attention block, after the raise
    state_page: int  # one recurrent layer's state, before padding
    page: int  # one layer's page, attention and padded state alike
    state_blocks: int  # blocks a request holds per recurrent group; 0: one per block ("all")
    mode: str  # mamba cache mode: "none" | "align" | "all"
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
    asked = prefix_caching_default(version) if prefix_caching is None else prefix_caching
    mode, refused = _mode(state, version, asked)
    state_page = state.page_bytes(tp)
    alignment = max(_KERNEL_ALIGNMENT, block_size)
    checkpoint_block = mode == "align" and v >= (0, 30) and (state.kind == "mamba2" or hopper)
    if checkpoint_block and state.kind == "gdn":
        alignment = lcm(alignment, _GDN_FLASHINFER_ALIGNMENT)
    if mode == "all":
        alignment = lcm(state.chunk_size or _DEFAULT_CHUNK, alignment)
    raised = alignment * -(-state_page // (alignment * token_bytes))
    new_block = max(block_size, raised)
    page = new_block * token_bytes
    blocks = {"none": 1, "align": 2, "all": 0}[mode] + (1 if checkpoint_block else 0)
    held = (f"holds {blocks} block(s) in each recurrent group"
            + (" (two states + the prefill checkpoint)" if checkpoint_block
               else " (the current and the last cached state)" if mode == "align" else "")
            if blocks else "holds one state per block of its length in each recurrent group")
    steps = [
        f"{state.kind} state per recurrent layer on one GPU = {state_page:,} B (conv "
        f"{state.heads * state.head_dim} + 2 x {state.groups} x {state.state} channels / TP "
        f"{tp} x {state.conv_kernel - 1} steps x {state.conv_bytes} B + SSM {state.heads} / "
        f"TP x {state.head_dim} x {state.state} x {state.ssm_bytes} B)",
        (f"attention block size raised to {new_block} tokens ({alignment}-token alignment"
         + (", the Mamba2 chunk size" if mode == "all" else "") + ") so "
         if new_block > block_size else f"attention block size {new_block} tokens kept: ")
        + f"one attention page ({new_block} x {token_bytes:,} B = {page:,} B) holds a state; "
        f"the state page is padded by {100 * (page - state_page) / state_page:.2f} % to match",
        f"prefix caching {'on' if mode != 'none' else 'off'}"
        + (f" ({refused})" if refused else "")
        + f" (mamba cache mode '{mode}', vLLM {version}): a request {held}",
    ]
    return HybridBlocks(block_size=new_block, state_page=state_page, page=page,
                        state_blocks=blocks, mode=mode, steps=tuple(steps))


def max_num_seqs_problem(version: str, *, max_num_seqs: int, num_blocks: int,
                         enforce_eager: bool) -> str:
    """Why vLLM would refuse to start with ``max_num_seqs`` on this hybrid pool, or "".

    With FULL decode CUDA graphs (the default; not with ``--enforce-eager``) every decoding
    sequence needs one Mamba block, so ``CompilationConfig`` raises "max_num_seqs (N)
    exceeds available Mamba cache blocks (M)" (0.20, 0.25 and 0.33 sources; not in 0.13).
    """
    if enforce_eager or _version(version) < (0, 17) or max_num_seqs <= num_blocks:
        return ""
    return (f"vLLM {version} will refuse to start: max_num_seqs ({max_num_seqs}) exceeds the "
            f"{num_blocks:,} blocks of the pool, and with FULL CUDA graphs every decoding "
            f"sequence of a hybrid model needs one Mamba block; set --max-num-seqs "
            f"{num_blocks} or less, or raise gpu-memory-utilization")
