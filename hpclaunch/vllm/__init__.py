"""What hpclaunch knows about vLLM itself.

The ``vllm serve`` flag catalogue (snapshots per version), reading its logs (bounded reads,
line parsing, failure rules as data), its Prometheus ``/metrics``, and tuning advice from
those numbers. Imports nothing else of hpclaunch but the core.
"""
