"""Layouts that span nodes: which of vLLM's own multi-node launches a plan uses, and the rule
that nodes divide the layout.

hpclaunch builds no cluster manager: the job's scheduler launcher (``srun``, ``pbsdsh``,
``pbs_tmrsh``) starts one process per node and vLLM's engines do the rest. Three launches:

``native``  TP/PP across nodes with vLLM's multiprocessing executor (0.33: ``--nnodes
            --node-rank --master-addr --master-port``; ranks above 0 ``--headless``).
``dp``      data parallel across nodes (``--data-parallel-size-local/-address/-rpc-port/
            -start-rank``, ``--headless`` on the other nodes); each engine stays on one node.
``ray``     ``--distributed-executor-backend ray``: a Ray head and workers started by the job,
            ``vllm serve`` on the head once Ray holds every node and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpclaunch.errors import UserError

NATIVE, DP, RAY = "native", "dp", "ray"
# Flags the job adds per node; a user or preset that sets them would fight the launch.
JOB_OWNED_FLAGS = ("nnodes", "node-rank", "master-addr", "master-port", "headless",
                   "data-parallel-size-local", "data-parallel-address",
                   "data-parallel-rpc-port", "data-parallel-start-rank")
# vLLM refuses --api-server-count with --headless: the other nodes serve no API.
HEAD_ONLY_FLAGS = ("api-server-count",)


@dataclass(frozen=True)
class Launch:
    """How a multi-node plan starts: the mode and what each node runs locally."""

    mode: str
    nodes: int
    gpus_per_node: int
    dp_local: int = 1


def check_layout(dp: int, tp: int, pp: int, nodes: int, backend: str | None) -> Launch | None:
    """The launch for ``dp x tp x pp`` on ``nodes`` nodes, or None for one node.

    Raises :class:`UserError` for layouts that do not divide, naming the fix: every node
    gets the same number of GPUs, and a DP engine (TP x PP) either stays on one node or,
    without DP, spreads evenly over all of them (vLLM's ``world_size % nnodes`` rule).
    """
    if nodes == 1:
        return None
    gpus = dp * tp * pp
    layout = f"dp={dp} x tp={tp} x pp={pp}"
    if gpus % nodes:
        raise UserError(f"--set nodes={nodes}: layout {layout} ({gpus} GPUs) does not divide "
                        f"over {nodes} nodes; make dp x tp x pp a multiple of {nodes}")
    per_node = gpus // nodes
    if backend == RAY:
        return Launch(RAY, nodes, per_node)
    if dp > 1:
        if dp % nodes:
            raise UserError(f"--set nodes={nodes}: dp={dp} does not divide over {nodes} nodes; "
                            f"with data parallel each node runs dp/nodes engines of tp x pp "
                            f"GPUs: use a dp that is a multiple of {nodes}")
        return Launch(DP, nodes, per_node, dp_local=dp // nodes)
    if (tp * pp) % nodes:
        raise UserError(f"--set nodes={nodes}: tp={tp} x pp={pp} does not divide over {nodes} "
                        f"nodes (vLLM needs world size % nnodes == 0)")
    return Launch(NATIVE, nodes, per_node)


def worker_flags(flags: list[str]) -> list[str]:
    """The head's flags minus those only an API server takes (``--api-server-count N``)."""
    out: list[str] = []
    skip = False
    for item in flags:
        if skip:
            skip = False
            continue
        name = item[2:].split("=", 1)[0] if item.startswith("--") else ""
        if name in HEAD_ONLY_FLAGS:
            skip = "=" not in item
            continue
        out.append(item)
    return out
