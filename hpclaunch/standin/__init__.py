"""A vLLM stand-in: ``python -m hpclaunch.standin serve MODEL [vllm serve flags...]``.

It lets the whole submit -> watch -> use path run on machines without a GPU (CI, laptops,
the demo): it parses its arguments with the real flag snapshot (an unknown flag exits 2 with
vLLM's own message), prints vLLM 0.33's startup lines in order with numbers computed by
:mod:`hpclaunch.planning.kv` from the model's facts and a simulated GPU, and serves the endpoints
hpclaunch and its users touch: ``/health``, ``/v1/models``, ``/v1/chat/completions``
(plain and streaming), ``/v1/completions`` and ``/metrics``. Standard library only, so it
starts in a fraction of a second wherever hpclaunch is installed. Nothing in the product
imports this package (import-linter forbids it): only the job runs it.

Modules, in the order a start-up uses them: :mod:`~hpclaunch.standin.cli` (entry point),
:mod:`~hpclaunch.standin.settings` (command line and knobs), :mod:`~hpclaunch.standin.memory`
(the simulated GPU budget), :mod:`~hpclaunch.standin.logwriter` (vLLM's line format),
:mod:`~hpclaunch.standin.process` (start-up, stats lines, shutdown),
:mod:`~hpclaunch.standin.loading` (the progress lines while loading),
:mod:`~hpclaunch.standin.failures` (what vLLM prints when it fails),
:mod:`~hpclaunch.standin.simulation` (engine counters, replies),
:mod:`~hpclaunch.standin.latency` (how long steps take under load),
:mod:`~hpclaunch.standin.rendezvous` (multi-node roles: ranks meet the head over TCP, the
Ray check) and :mod:`~hpclaunch.standin.server` (the HTTP routes).

The very first line says it is a simulation, and it is still a parseable vLLM log line::

    (APIServer pid=7) WARNING 11-25 12:00:00 [standin.py:1] [hpclaunch_standin] SIMULATED ...

Knobs (environment):

``HPCLAUNCH_STANDIN_GPU``
    GPU to simulate (name from :data:`hpclaunch.planning.kv.GPUS`), default ``H100-80GB``.
``HPCLAUNCH_STANDIN_STARTUP_DELAY``
    Seconds to wait (not listening yet) before "Application startup complete".
``HPCLAUNCH_STANDIN_FAIL``
    Force a failure: ``oom``, ``kv_too_small``, ``no_kv_memory``, ``port_in_use``,
    ``model_missing``, ``bad_parser``, ``flashinfer``, ``exit``, ``crash_after_ready``,
    ``hang_after_ready``. Real conditions fail on their own without it: weights larger than
    the GPU, a ``--max-model-len`` that does not fit the KV cache or exceeds the model's
    context, an unknown ``--reasoning-parser``, a port in use, a missing local model dir.
``HPCLAUNCH_STANDIN_CRASH_AFTER``
    Seconds after readiness for ``crash_after_ready`` / ``hang_after_ready`` (default 2).
``HPCLAUNCH_STANDIN_RECORD``
    Append one JSON line per HTTP request (method, path, model, Authorization) to this file.
``HPCLAUNCH_STANDIN_TOKEN_DELAY``
    Seconds of one decode step with one request running (default 0: answers at once).
    With ``b`` requests running a step takes ``delay * (1 + b / saturation)``: one request
    gets ``1 / delay`` tokens/s, an engine approaches ``saturation / delay`` (see
    :mod:`hpclaunch.standin.latency`). At most ``--max-num-seqs`` run per engine; the rest wait.
``HPCLAUNCH_STANDIN_BATCH_SATURATION``
    The batch size at which a step takes twice as long as alone (default 16).
``HPCLAUNCH_STANDIN_PREFILL_DELAY``
    Seconds of prefill per prompt token, slowed by the batch the same way (default 0).
``HPCLAUNCH_STANDIN_LOAD_SECONDS``
    Spread start-up over about this many seconds, printing vLLM's progress lines as they
    happen: checkpoint shards, torch.compile, CUDA graph capture (default 0: all at once).
``HPCLAUNCH_STANDIN_VLLM_VERSION``
    Flag snapshot to parse arguments with (default 0.33.0); the log format stays 0.33's.
``HPCLAUNCH_JOIN_TIMEOUT``
    Multi-node: seconds the head waits for every rank (or Ray for every GPU), and a rank for
    the head, before failing with torch's/vLLM's words (default 300; the job script uses it).
``VLLM_API_KEY``, ``VLLM_LOG_STATS_INTERVAL`` (fractions allowed), ``VLLM_ALLOW_LONG_MAX_MODEL_LEN``
    As in vLLM.
"""
