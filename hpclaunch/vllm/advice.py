"""Tuning advice from what a running vLLM server printed: the guide's rules as pure functions.

The rules come from the team's tuning guide (seed 003, "How to Choose max_num_seqs" and
"Calculating Optimal Batch Size"), checked against vLLM's behaviour:

* KV cache usage below 30 % leaves room for more concurrent requests, 30–70 % is the target,
  above 80 % vLLM starts preempting (recomputing) requests when the cache fills.
* Batch size for a target of 60 % usage ≈ current running × 60 / current usage (guide: 8 running
  at 1.6 % → ≈ 300, "try 256 or 512").
* Requests that wait while the KV cache is mostly free are held back by ``--max-num-seqs``, not
  by memory.
* The startup line "Maximum concurrency for L tokens per request: X" is what one engine's KV
  cache holds at full length.  The guide multiplies it by the engines (8.49 × 4 → 33, "use 32")
  to get a total.  vLLM applies ``--max-num-seqs`` to *each* engine (every data-parallel rank
  has its own scheduler), so the flag value that matches the guide's total is floor(X) per
  engine; both numbers are reported, and the warning compares the flag with X.  That capacity
  is a worst case (every request at max_model_len), so the warning is held back while measured
  usage stays in the target without preemptions: the real requests are shorter, and the
  usage-based rules above are then the better guide.
* A model under 7B fits on one GPU: tensor parallelism only adds communication, data
  parallelism multiplies throughput.

Each :class:`Advice` carries the numbers behind its message so the CLI can print them as a
table or JSON.  Nothing here reads files or talks to a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from hpclaunch.vllm.logs.report import LogReport, StatsTotals

__all__ = ["Advice", "advise", "suggested_batch"]

KV_LOW_PCT = 30.0
KV_OPTIMAL_MAX_PCT = 70.0
KV_HIGH_PCT = 80.0
KV_TARGET_PCT = 60.0
SMALL_MODEL_B = 7.0
OVER_CAPACITY_RATIO = 2.0  # --max-num-seqs this many times the full-length capacity: warn


@dataclass(frozen=True)
class Advice:
    """One piece of advice.  ``code`` is stable for tests and scripts; the message is for people."""

    level: Literal["info", "warn"]
    message: str
    numbers: dict[str, float | int] = field(default_factory=dict)
    code: str = ""


def suggested_batch(running: float, kv_usage_pct: float, target_pct: float = KV_TARGET_PCT) -> int:
    """Batch size that would bring KV usage to ``target_pct``: running × target / usage.

    Linear in the number of sequences, which holds while request lengths stay alike.
    """
    if kv_usage_pct <= 0:
        raise ValueError("KV cache usage must be positive to extrapolate from it")
    return round(running * target_pct / kv_usage_pct)


def _powers_of_two_around(x: int) -> tuple[int, int]:
    """The powers of two at or just below and above ``x`` (300 → 256, 512), as the guide rounds."""
    if x <= 1:
        return 1, 1
    low = 2 ** int(math.floor(math.log2(x)))
    return low, low if low == x else low * 2


def advise(
    report: LogReport,
    *,
    max_num_seqs: int | None,
    dp: int,
    tp: int,
    params_b: float | None,
) -> list[Advice]:
    """Advice for one server from its parsed log and launch settings.

    Parameters
    ----------
    report
        :func:`hpclaunch.vllm.logs.parse.parse` output.
    max_num_seqs
        The ``--max-num-seqs`` it was started with (per engine, as vLLM applies it), if known.
    dp, tp
        Data- and tensor-parallel sizes it was started with.
    params_b
        Model size in billions of parameters, if known.
    """
    totals = report.totals()
    out: list[Advice] = []
    out += _capacity(report, totals, max_num_seqs, dp)
    out += _load(totals, max_num_seqs)
    if tp > 1 and params_b is not None and params_b < SMALL_MODEL_B:
        gpus = dp * tp
        numbers: dict[str, float | int] = {"params_b": params_b, "tp": tp, "dp": dp}
        if totals is not None:
            numbers["gen_tps"] = totals.gen_tps
        out.append(
            Advice(
                "info",
                f"a {params_b:g}B model fits on one GPU: TP={tp} splits every layer across GPUs "
                "and spends time on communication, which only pays off for single-request "
                f"latency; for throughput use --data-parallel-size {gpus} with TP=1 ({gpus} "
                f"full copies, up to ~{tp}x the throughput of this layout)",
                numbers,
                "use_dp",
            )
        )
    if report.startup.stats_disabled and not report.stats:
        out.append(
            Advice(
                "info",
                "vLLM turned its stats lines off because more than one API server runs (the "
                "default with data parallelism in 0.33): pass --api-server-count 1 to see them, "
                "or read /metrics",
                {"dp": dp},
                "stats_disabled",
            )
        )
    return out


def _capacity(
    report: LogReport, t: StatsTotals | None, max_num_seqs: int | None, dp: int
) -> list[Advice]:
    """What the KV cache holds at full length, from the startup "Maximum concurrency" lines."""
    facts = report.startup
    if not facts.max_concurrency:
        return []
    per_engine = min(facts.max_concurrency)  # engines are alike; the smallest one limits
    engines = max(dp, len(facts.max_concurrency))
    total = math.floor(per_engine * engines)
    per_engine_seqs = math.floor(per_engine)
    length = facts.for_tokens or 0
    numbers: dict[str, float | int] = {
        "max_concurrency_per_engine": per_engine,
        "engines": engines,
        "for_tokens": length,
        "total_capacity": total,
        "max_num_seqs_per_engine": per_engine_seqs,
    }
    if per_engine < 1:
        # vLLM refuses to start (or, in old versions, preempts forever) when one full-length
        # request does not fit; recommending --max-num-seqs 0 would be nonsense.
        numbers["max_num_seqs_per_engine"] = 1
        longest = math.floor(per_engine * length)
        return [Advice(
            "warn",
            f"the KV cache holds only {per_engine:.2f} of one request of {length:,} tokens: "
            f"a full-length request cannot be served; use --max-model-len {longest} or less, "
            "more tensor parallelism, or a higher --gpu-memory-utilization",
            {**numbers, "max_model_len_that_fits": longest}, "kv_below_one_request")]
    if engines > 1:
        message = (
            f"the KV cache holds {per_engine:.2f} requests of {length:,} tokens per engine x "
            f"{engines} engines = {total} at full length; vLLM applies --max-num-seqs to each "
            f"engine, so --max-num-seqs {per_engine_seqs} matches that total"
        )
    else:
        message = (
            f"the KV cache holds {per_engine:.2f} requests of {length:,} tokens at full length: "
            f"--max-num-seqs {per_engine_seqs} never has to preempt"
        )
    out = [Advice("info", message, numbers, "capacity")]
    # The capacity is a worst case (every request at max_model_len).  Measured usage that stays
    # in the target without preemptions shows the real requests are shorter, and then the
    # usage-based advice in _load is the better guide, so the bound does not warn.
    coping = (
        t is not None
        and t.running > 0
        and t.kv_usage_pct <= KV_OPTIMAL_MAX_PCT
        and not t.preemptions
    )
    if max_num_seqs is not None and per_engine > 0 and not coping:
        ratio = max_num_seqs / per_engine
        if ratio > OVER_CAPACITY_RATIO:
            out.append(
                Advice(
                    "warn",
                    f"--max-num-seqs {max_num_seqs} is {ratio:.1f}x what one engine's KV cache "
                    f"holds at full length ({per_engine:.2f} x {length:,} tokens): long requests "
                    f"will be preempted once the cache fills; use about {per_engine_seqs}, or a "
                    "smaller --max-model-len if requests are shorter",
                    {**numbers, "max_num_seqs": max_num_seqs, "ratio": round(ratio, 2)},
                    "max_num_seqs_high",
                )
            )
    return out


def _load(t: StatsTotals | None, max_num_seqs: int | None) -> list[Advice]:
    """Advice from the latest periodic stats: KV usage, queueing, preemptions."""
    if t is None or (t.running == 0 and t.waiting == 0):
        return []  # no stats yet, or idle: usage says nothing about the batch size
    usage, running = t.kv_usage_pct, t.running
    per_engine_running = running / max(t.engines, 1)
    base: dict[str, float | int] = {"kv_usage_pct": usage, "running": running, "engines": t.engines}
    out: list[Advice] = []
    suggestion: dict[str, float | int] = {}
    if usage > 0 and running > 0:
        best = suggested_batch(per_engine_running, usage)
        low, high = _powers_of_two_around(best)
        suggestion = {"suggested_max_num_seqs": best, "try_low": low, "try_high": high}

    if usage < KV_LOW_PCT:
        hint = ""
        if suggestion:
            hint = (
                f"; for {KV_TARGET_PCT:.0f}% usage a batch of about "
                f"{suggestion['suggested_max_num_seqs']} per engine "
                f"(try --max-num-seqs {suggestion['try_low']} or {suggestion['try_high']})"
            )
        out.append(
            Advice(
                "info",
                f"KV cache usage is {usage:.1f}% with {running} requests running: there is room "
                f"to raise --max-num-seqs{hint}",
                {**base, **suggestion},
                "kv_low",
            )
        )
    elif usage <= KV_OPTIMAL_MAX_PCT:
        out.append(
            Advice(
                "info",
                f"KV cache usage is {usage:.1f}%: within the 30-70% target",
                base,
                "kv_optimal",
            )
        )
    elif usage <= KV_HIGH_PCT:
        out.append(
            Advice(
                "info",
                f"KV cache usage is {usage:.1f}%: at the top of the target, little headroom left "
                "for longer requests",
                base,
                "kv_near_full",
            )
        )
    else:
        out.append(
            Advice(
                "warn",
                f"KV cache usage is {usage:.1f}% (> {KV_HIGH_PCT:.0f}%): vLLM preempts requests "
                "when it fills; lower --max-num-seqs"
                + (
                    f" toward {suggestion['suggested_max_num_seqs']} per engine"
                    if suggestion
                    else ""
                ),
                {**base, **suggestion},
                "kv_high",
            )
        )

    slots_full = max_num_seqs is not None and running >= max_num_seqs * t.engines
    if t.waiting > 0 and usage < 50.0 and (max_num_seqs is None or slots_full):
        numbers = {**base, "waiting": t.waiting}
        limit = ""
        if max_num_seqs is not None:
            numbers["max_num_seqs"] = max_num_seqs
            limit = f" ({max_num_seqs} per engine, all in use)"
        out.append(
            Advice(
                "warn",
                f"{t.waiting} requests wait while the KV cache is only {usage:.1f}% used: the "
                f"limit is --max-num-seqs{limit}, not memory; raise it",
                numbers,
                "limited_by_max_num_seqs",
            )
        )
    if t.preemptions:
        out.append(
            Advice(
                "warn",
                f"vLLM preempted {t.preemptions} request(s) in the last stats interval: the KV "
                "cache ran out; lower --max-num-seqs or --max-model-len",
                {**base, "preemptions": t.preemptions},
                "preemptions",
            )
        )
    return out
