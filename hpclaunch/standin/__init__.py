"""A stand-in for ``vllm serve``: same command line, vLLM's log lines, its HTTP API.

Run as ``python -m hpclaunch.standin`` by job scripts rendered with ``--simulate``.
Nothing in the product imports this package (import-linter forbids it): only the job runs it.
"""
