"""Load sweeps against named endpoints: ``hpclaunch bench``.

:mod:`~hpclaunch.bench.workload` says what to send (prompt sizes, a dataset, the guides'
profiles), :mod:`~hpclaunch.bench.load` sends it with asyncio over one kept HTTP client,
:mod:`~hpclaunch.bench.results` turns replies into per-level numbers,
:mod:`~hpclaunch.bench.report` prints them (table, side by side, CSV),
:mod:`~hpclaunch.bench.plot` draws them (matplotlib, the ``plot`` extra) and
:mod:`~hpclaunch.bench.history` keeps them beside the endpoint.
"""
