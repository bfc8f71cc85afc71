"""Endpoints that outlive a job: replica fleets behind the real vllm-router.

``launch`` queues and retires replicas and the router job, ``router`` renders the
router job and calls its admin API, ``agent`` is the side process each replica job
runs (join when READY, leave before stopping, idle stop), ``view`` summarises a
fleet for ``endpoints`` and ``status``. docs/fleets.md says what runs where.
"""
