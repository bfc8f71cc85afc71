"""Reading vLLM's realtime log: what the server is doing, and why it died.

hpclaunch decides whether an endpoint is STARTING, READY or FAILED, and what its load looks
like, from the log the job writes (``vllm_<name>_port<port>_realtime.log``).  One idea per
module, in the order the data flows:

* :mod:`.read` -- bounded reads: head and tail of a file that may be gigabytes, or remote.
* :mod:`.lines` -- one line at a time: vLLM's prefixes per version, startup facts, stats lines.
* :mod:`.failures` -- failure rules as data: pattern, code, reason, fix, one row each.
* :mod:`.report` -- the typed result (:class:`~.report.LogReport` and its parts).
* :mod:`.parse` -- one pass over a chunk that ties the above together.

Only the standard library is imported: the CLI calls this for every endpoint on every
``status``.  This ``__init__`` imports nothing, so reading the byte bounds stays cheap.
"""
