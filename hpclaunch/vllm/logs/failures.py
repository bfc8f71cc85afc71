"""Failure rules as data: one row per way a vLLM server dies, with its code, reason and fix.

Each :class:`Rule` is a row: the literal needles that any matching line contains (a cheap
pre-filter), a regular expression with named groups, and ``reason`` / ``fix`` templates
filled from those groups.  A row whose wording depends on more than the groups names a small
``fields`` function that computes the extra template fields (or declines the match).  A new
failure costs one row here and one line in ``FAILURE_CASES`` of the tests.

Every pattern is traced to the text its ``origin`` prints (vLLM, or Slurm, PBS, torch, a
container runtime, huggingface_hub); for vLLM see
``tests/data/vllm-source/`` and ``tests/unit/vllm/test_vllm_source.py``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hpclaunch.vllm.logs.report import Failure

__all__ = ["RULES", "TRACEBACK_PRIORITY", "Rule", "match_rules"]

Fields = Callable[[re.Match[str], str | None], Mapping[str, str] | None]

# Priority of "an unknown exception before readiness" (see parse.py): below every rule that
# names the cause, above the ones that only say the engine is gone.
TRACEBACK_PRIORITY = 90


@dataclass(frozen=True)
class Rule:
    """One failure pattern: when ``pattern`` matches a message, the server failed with ``code``.

    The lowest ``priority`` that matched anywhere wins: it is the most root cause (a bad flag
    stops vLLM before anything else can go wrong; "EngineCore failed to start" only says that
    something else did).  Within one priority the first occurrence wins, and rows are tried
    in order, so a specific row comes before the general one with the same code.
    """

    priority: int
    code: str
    needles: tuple[str, ...]  # one of these literals is in every line the pattern can match
    pattern: re.Pattern[str]
    reason: str  # str.format template over the pattern's named groups and ``fields``
    fix: str
    fields: Fields | None = None
    # Who writes the text: "vllm" rows are traced to a format string in vLLM's source (see
    # tests/data/vllm-source/); the others name the program whose wording they match.
    origin: str = "vllm"

    def apply(self, m: re.Match[str], level: str | None) -> Failure | None:
        """The failure this match proves, or None when the row declines it."""
        values = {k: v or "" for k, v in m.groupdict().items()}
        if self.fields is not None:
            extra = self.fields(m, level)
            if extra is None:
                return None
            values.update(extra)
        return Failure(
            self.code, self.reason.format(**values), self.fix.format(**values), m.string.strip()
        )


# --------------------------------------------------------------------------------------------
# The few rows whose wording needs more than the matched groups
# --------------------------------------------------------------------------------------------


def _not_a_warning(_m: re.Match[str], level: str | None) -> Mapping[str, str] | None:
    """VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 turns vLLM's error into a warning: not a failure then."""
    return None if level == "WARNING" else {}


def _reasoning_hint(m: re.Match[str], _level: str | None) -> Mapping[str, str]:
    name = m["name"].rstrip("'\"")
    known = [c.strip() for c in (m["known"] or "").split(",")]
    fixed = name.replace("-", "_")
    return {"name": name, "hint": f" (did you mean {fixed}?)" if fixed in known else ""}


def _http_port(m: re.Match[str], _level: str | None) -> Mapping[str, str]:
    port = re.search(r"\('[^']*', (\d+)\)", m.string)
    return {"which": f"port {port[1]}" if port else "the HTTP port"}


def _model_name(m: re.Match[str], _level: str | None) -> Mapping[str, str]:
    what = f"model {m['model']!r} was not found" if m["model"] else "the model could not be fetched"
    if "GatedRepoError" in m.string:
        what += " (gated repository: it needs an HF token)"
    return {"what": what}


def _kv_limits(m: re.Match[str], _level: str | None) -> Mapping[str, str] | None:
    line = m.string
    if "KV cache" not in line:
        return None
    need = re.search(r"\(([\d.]+) GiB KV cache is needed", line)
    avail = re.search(r"available KV cache memory \((-?[\d.]+) GiB\)", line)
    est = re.search(r"estimated maximum model length is (\d+)", line)
    v0 = re.search(r"maximum number of tokens that can be stored in KV cache \((\d+)\)", line)
    detail = ""
    if need and avail:
        detail = f": {need[1]} GiB needed, {avail[1]} GiB available"
    elif v0:
        detail = f": it holds only {v0[1]} tokens"
    if est:
        detail += f"; the estimated maximum model length is {est[1]}"
    limit = est[1] if est else v0[1] if v0 else None
    first = f"set --max-model-len ≤ {limit}, or" if limit else "lower --max-model-len,"
    return {"detail": detail, "first": first}


def _flashinfer_small(m: re.Match[str], _level: str | None) -> Mapping[str, str] | None:
    # (513,) into (512,) etc. are other bugs: leave them to the traceback rule.
    return {} if int(m["seqs"]) < 9 else None


def _free_share(m: re.Match[str], _level: str | None) -> Mapping[str, str]:
    return {"share": f"{float(m['free']) / float(m['total']):.2f}"}


def _lower(m: re.Match[str], _level: str | None) -> Mapping[str, str]:
    return {"why": m["why"].lower()}


def _image(m: re.Match[str], _level: str | None) -> Mapping[str, str]:
    image = re.search(r"(?:docker://|image )'?([\w./:@-]+)", m.string)
    return {"what": f"image {image[1]}" if image else "the container image"}


# --------------------------------------------------------------------------------------------
# The rows
# --------------------------------------------------------------------------------------------

_OOM_FIX = (
    "lower --gpu-memory-utilization, --max-num-seqs or --max-model-len, or use tensor parallelism"
)
_LONG_LEN_FIX = (
    " VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if the model really supports more (RoPE scaling)"
)
_SLURM_CANCEL = r"\*\*\* (?:JOB|STEP) (?P<job>\S+) ON (?P<host>\S+) CANCELLED AT (?P<at>\S+) "
_START = (
    "EngineCore failed to start",
    "Engine core initialization failed",
    "Engine process failed to start",
)
_MODEL = (
    "Invalid repository ID",
    "RepositoryNotFound",
    "Repository Not Found",
    "GatedRepo",
    "HFValidation",
    "LocalEntryNotFound",
    "not a valid model identifier",
    "Cannot find the requested files",
)
# Container and offline-cache faults happen before vLLM prints anything: the runtime's and
# huggingface_hub's own words land in the realtime log (the job sends the runtime's stderr
# there).
_IMAGE = (
    "initializing source docker://",  # podman: no registry, or no such image there
    "image not known",                # podman --pull never
    "Unable to find image",           # docker
    "pull access denied",             # docker
    "manifest unknown",
    "could not open image",           # apptainer: a missing .sif
    "Unable to handle docker://",     # apptainer: a docker:// image it cannot pull
)
_GPU = (
    "unresolvable CDI devices",       # podman: no CDI spec for nvidia.com/gpu
    "could not select device driver",  # docker without nvidia-container-toolkit
    "Could not find any nv ",         # apptainer --nv on a node without the driver
    "no ROCm devices",
)
_OFFLINE = (
    "outgoing traffic has been disabled",  # huggingface_hub's LocalEntryNotFoundError
    "We couldn't connect to",              # transformers, offline or no route to the Hub
    "HF_HUB_OFFLINE=1",
)
_PORT_NEEDLES = ("Errno 98", "already in use", "EADDRINUSE")
_PORT_TAKEN = r"\[Errno 98\]|address already in use|EADDRINUSE"
_R = re.compile

# fmt: off
RULES: tuple[Rule, ...] = (
    # First: one line can hold both a container/cache fault and a more generic needle, and
    # nothing else could run after these.
    Rule(5, "container_image", _IMAGE, _R("|".join(map(re.escape, _IMAGE))),
         "the container runtime could not find or pull {what}",
         "check container.image in the profile or preset; compute nodes without a registry "
         "need a local image (podman images) or a .sif on a shared filesystem", _image,
         origin="podman, docker, apptainer"),
    Rule(6, "container_gpu", _GPU, _R("|".join(map(re.escape, _GPU))),
         "the container runtime could not hand the GPUs in",
         "run on a GPU node with the driver loaded; Podman needs a CDI spec (nvidia-ctk cdi "
         "generate), Docker the nvidia-container-toolkit; set container.gpus: rocm on AMD",
         origin="podman, docker, apptainer"),
    Rule(10, "unknown_flag", ("unrecognized arguments",),
         _R(r"error: unrecognized arguments: (?P<flags>.+?)\s*$"),
         "this vLLM does not know {flags}",
         "remove or rename {flags}: flags differ between vLLM versions, and "
         "`vllm serve --help=all` on the cluster lists the ones it knows", origin="argparse"),
    Rule(11, "bad_argument", (": error: ",),
         _R(r"^(?:vllm(?: serve)?|\S+\.py): error: (?P<what>.+?)\s*$"),
         "vllm serve rejected its arguments: {what}",
         "fix that argument; spell flags out in full (argparse also accepts unambiguous "
         "prefixes)", origin="argparse"),
    Rule(15, "bad_reasoning_parser", ("reasoning parser: ",),
         _R(r"[Ii]nvalid reasoning parser: (?P<name>\S+)(?: \(chose from \{(?P<known>[^}]*)\}\))?"),
         "--reasoning-parser {name} is not registered in this vLLM{hint}",
         "use a registered name; they use underscores, e.g. qwen3, deepseek_r1, openai_gptoss",
         _reasoning_hint),
    # torch.distributed's own ports (its store, NCCL) before the HTTP port: same errno.
    Rule(20, "port_in_use", _PORT_NEEDLES,
         _R(rf"^(?=.*(?:EADDRINUSE|failed to listen))(?=.*(?:{_PORT_TAKEN}))", re.I),
         "an internal (torch.distributed) port is already taken on this node",
         "another job on the node uses the same internal ports: set VLLM_PORT (or "
         "MASTER_PORT) to a free range, or run on another node", origin="torch.distributed"),
    Rule(20, "port_in_use", _PORT_NEEDLES, _R(_PORT_TAKEN, re.I),
         "{which} is already in use on this node",
         "pick another --port (or let hpclaunch choose a free one), or stop the server holding "
         "it", _http_port, origin="the OS (errno 98)"),
    Rule(24, "offline_cache_miss", _OFFLINE, _R("|".join(map(re.escape, _OFFLINE))),
         "the model's weights are not in the offline Hugging Face cache (HF_HUB_OFFLINE=1)",
         "run hpclaunch prefetch MODEL --cluster CLUSTER (it downloads into the cluster's "
         "hf-home), then resubmit", origin="huggingface_hub, transformers"),
    Rule(25, "model_not_found", _MODEL,
         _R(r"Invalid repository ID or local directory specified: '(?P<model>[^']*)'|"
            + "|".join(map(re.escape, _MODEL[1:]))),
         "{what}",
         "check the name or path; compute nodes are often offline, so download it first "
         "(huggingface-cli download) into HF_HOME or --download-dir and set HF_HUB_OFFLINE=1",
         _model_name),
    Rule(30, "max_model_len_too_long", ("User-specified max_model_len",),
         _R(r"User-specified max_model_len \((?P<len>\d+)\) is greater than the derived "
            r"max_model_len \([^)=]*=(?P<derived>\d+)"),
         "--max-model-len {len} is longer than the model's context ({derived})",
         "set --max-model-len ≤ {derived}, or" + _LONG_LEN_FIX, _not_a_warning),
    Rule(30, "max_model_len_too_long", ("User-specified max_model_len",),
         _R(r"User-specified max_model_len \((?P<len>\d+)\) is greater than the derived "
            r"max_model_len"),
         "--max-model-len {len} is longer than the model's context",
         "lower --max-model-len, or set" + _LONG_LEN_FIX, _not_a_warning,
         origin="vllm before 0.8 (no derived value quoted)"),
    Rule(35, "no_gpu", ("No CUDA GPUs", "Found no NVIDIA driver"),
         _R(r"No CUDA GPUs are available|Found no NVIDIA driver"),
         "no GPU is visible to vLLM",
         "request GPUs from the scheduler (e.g. --gres=gpu:N, -l ngpus=N) and check "
         "CUDA_VISIBLE_DEVICES", origin="torch"),
    Rule(40, "kv_too_small", ("max seq len",), _R(r"max seq len \((?P<len>\d+)\)"),
         "the KV cache cannot hold one request of max_model_len {len}{detail}",
         "{first} raise --gpu-memory-utilization or use tensor parallelism", _kv_limits),
    Rule(45, "no_kv_memory", ("No available memory",),
         _R(r"No available memory for the cache blocks"),
         "no GPU memory is left for the KV cache after loading the model",
         "raise --gpu-memory-utilization, use tensor parallelism or a quantized model, or lower "
         "--max-num-seqs / --max-num-batched-tokens"),
    Rule(50, "flashinfer_broadcast", ("could not broadcast",),
         _R(r"could not broadcast input array from shape \((?P<want>\d+),\) into shape "
            r"\((?P<seqs>\d+),\)"),
         "FlashInfer warm-up needs at least 9 sequences but --max-num-seqs is {seqs} (a "
         "FlashInfer bug seen on Blackwell consumer GPUs such as the RTX 5090)",
         "raise --max-num-seqs to ≥ 9, or use another attention backend", _flashinfer_small,
         origin="numpy (inside FlashInfer)"),
    # CUDA out of memory, most specific wording first.
    Rule(55, "cuda_oom", ("Free memory on device",),
         _R(r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on "
            r"startup is less than desired GPU memory utilization \((?P<util>[\d.]+), "
            r"(?P<want>[\d.]+) GiB\)"),
         "only {free} of {total} GiB is free on the GPU (another process holds the rest) but "
         "--gpu-memory-utilization {util} asks for {want} GiB",
         "free the GPU, or set --gpu-memory-utilization below {share}", _free_share),
    Rule(56, "cuda_oom", ("warming up sampler",),
         _R(r"out of memory occurred when warming up sampler with (?P<seqs>\d+) dummy"),
         "CUDA out of memory while warming up the sampler with {seqs} sequences",
         "lower --max-num-seqs below {seqs} or lower --gpu-memory-utilization"),
    Rule(57, "cuda_oom", ("Tried to allocate",),
         _R(r"CUDA out of memory\. Tried to allocate (?P<tried>[\d.]+ \w+)\. GPU (?P<gpu>\d+) "
            r"has a total capacity of (?P<total>[\d.]+ \w+) of which (?P<free>[\d.]+ \w+) is "
            r"free"),
         "CUDA out of memory: tried to allocate {tried} with {free} free of {total} on GPU {gpu}",
         _OOM_FIX, origin="torch"),
    Rule(58, "cuda_oom", ("out of memory", "OutOfMemory", "not enough GPU memory"),
         _R(r"CUDA out of memory|OutOfMemoryError|CUDA (?:driver )?error: out of memory"
            r"|Failed to load model - not enough GPU memory"),
         "CUDA out of memory", _OOM_FIX),
    # Multi-node: a rank or a Ray node that never arrived.
    Rule(60, "nodes_missing", ("clients joined",),
         _R(r"waiting for clients\. (?P<joined>\d+)/(?P<total>\d+) clients joined"),
         "only {joined} of {total} nodes joined the head's torch.distributed store in time",
         "read the other nodes' logs (hpclaunch logs NAME --node N): each must start and reach "
         "the head's IP and master port (firewall; NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME in "
         "the profile's env)", origin="torch.distributed (TCPStore)"),
    Rule(61, "ray_gpus_missing", ("exceeds the total number of available GPUs",),
         _R(r"exceeds the total number of available GPUs"),
         "Ray does not hold the GPUs the layout needs (a node missing from the Ray cluster?)",
         "read each node's Ray log (hpclaunch logs NAME --node N), or fix the layout's GPU "
         "count", origin="vllm's Ray executor (ray_utils.py; a raise not in the snapshot yet)"),
    # The scheduler ended the job: a vLLM cause printed before that is the more useful one.
    Rule(70, "killed_by_scheduler", ("oom_kill", "oom-kill"),
         _R(r"Detected (?P<n>\d+) oom[-_]kill event"),
         "the scheduler killed the job: host memory exhausted ({n} oom_kill event)",
         "request more host memory (--mem / --mem-per-gpu); GPU memory was not the problem",
         origin="Slurm"),
    Rule(71, "killed_by_scheduler", ("PBS: job killed",),
         _R(r"=>> PBS: job killed: walltime (?P<used>\S+) exceeded limit (?P<limit>\S+)"),
         "PBS killed the job: walltime {used} s exceeded its limit of {limit} s",
         "ask for a longer -l walltime= or resubmit", origin="PBS"),
    Rule(71, "killed_by_scheduler", ("PBS: job killed",),
         _R(r"=>> PBS: job killed: (?P<what>\w+) (?P<used>\S+) exceeded limit (?P<limit>\S+)"),
         "PBS killed the job: {what} {used} exceeded its limit of {limit}",
         "request more {what} (-l {what}=...) and resubmit", origin="PBS"),
    Rule(72, "killed_by_scheduler", ("CANCELLED AT",),
         _R(_SLURM_CANCEL + r"DUE TO TIME LIMIT \*\*\*"),
         "Slurm job {job} on {host} reached its time limit at {at}",
         "ask for a longer --time (walltime) or resubmit", origin="Slurm"),
    Rule(73, "killed_by_scheduler", ("CANCELLED AT",),
         _R(_SLURM_CANCEL + r"DUE TO PREEMPTION \*\*\*"),
         "Slurm job {job} on {host} was preempted at {at}",
         "resubmit, or use a partition/QOS that is not preemptible", origin="Slurm"),
    Rule(74, "killed_by_scheduler", ("CANCELLED AT",),
         _R(_SLURM_CANCEL + r"DUE TO (?P<why>[A-Z][A-Z ]*?) \*\*\*"),
         "Slurm job {job} on {host} was cancelled due to {why} at {at}",
         "resubmit; if it repeats, ask the cluster admins about the node", _lower,
         origin="Slurm"),
    # A plain "CANCELLED AT t ***" (no DUE TO) is scancel, e.g. `hpclaunch stop`: not a failure.
    Rule(80, "engine_dead", ("EngineDeadError",), _R("EngineDeadError"),
         "the engine died while serving",
         "read the error above EngineDeadError (hpclaunch shows the last lines), fix it and "
         "resubmit; /health answers 503 until then"),
    Rule(85, "engine_start_failed", _START, _R("|".join(_START)),
         "the engine failed to start",
         "read the root cause printed around this line (hpclaunch shows the last lines)"),
)
# fmt: on


@functools.lru_cache(maxsize=1024)
def match_rules(level: str | None, msg: str) -> tuple[int, Failure] | None:
    """The first row that matches a message.  Cached: a crash loop repeats the same lines."""
    for rule in RULES:
        if not any(n in msg for n in rule.needles):
            continue
        m = rule.pattern.search(msg)
        failure = rule.apply(m, level) if m is not None else None
        if failure is not None:
            return rule.priority, failure
    return None
