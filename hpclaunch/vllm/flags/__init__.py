"""Which ``vllm serve`` flags exist in a given vLLM version, and what to say about the rest.

A wrong flag costs a researcher a queue wait: the job starts hours later and dies in a
second with ``vllm serve: error: unrecognized arguments: --swap-space 4``. The guides this
project replaces list flags that were removed years ago (``--swap-space``,
``--speculative-model``) or never existed (``--quantized-kv-cache``). So every flag is
checked before submission against a snapshot of that version's parser
(``data/vllm-<version>-serve-flags.json``, read statically from vLLM's source by
``scripts/refresh_vllm_facts.py``), with argparse's own rules.

* :mod:`.catalogue` -- the snapshots: which flags a version has, their kinds and defaults.
* :mod:`.values` -- value shapes as vLLM's type functions check them (``32k`` vs ``32K``).
* :mod:`.check` -- every problem with an argv, with the replacement for removed flags.
* :mod:`.argparser` -- an argparse parser of exactly that version's flags (for the stand-in
  and for reading what a preset sets).
"""
