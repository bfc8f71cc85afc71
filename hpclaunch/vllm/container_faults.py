"""Failure rows for jobs whose server runs in a container or from an offline cache.

These faults happen before vLLM prints anything: the runtime cannot find the image or
hand in the GPUs, or huggingface_hub (with ``HF_HUB_OFFLINE=1``) finds no weights in the
cache. The runtime's and the library's own words land in the realtime log (the job
redirects the runtime's stderr there). Each row is ``(priority, code, needles, pattern,
build)`` in the form of :mod:`hpclaunch.vllm.logwatch`'s rule table, which adds them; the
priorities come before vLLM's own causes, as nothing else could run.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Build = Callable[[re.Match[str], str | None], tuple[str, str] | None]

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


def _image(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    image = re.search(r"(?:docker://|image )'?([\w./:@-]+)", m.string)
    what = f"image {image[1]}" if image else "the container image"
    return (
        f"the container runtime could not find or pull {what}",
        "check container.image in the profile or preset; compute nodes without a registry need "
        "a local image (podman images) or a .sif on a shared filesystem",
    )


def _gpu(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "the container runtime could not hand the GPUs in",
        "run on a GPU node with the driver loaded; Podman needs a CDI spec (nvidia-ctk cdi "
        "generate), Docker the nvidia-container-toolkit; set container.gpus: rocm on AMD",
    )


def _offline(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "the model's weights are not in the offline Hugging Face cache (HF_HUB_OFFLINE=1)",
        "run hpclaunch prefetch MODEL --cluster CLUSTER (it downloads into the cluster's "
        "hf-home), then resubmit",
    )


ROWS: tuple[tuple[int, str, tuple[str, ...], re.Pattern[str], Build], ...] = (
    (5, "container_image", _IMAGE, re.compile("|".join(map(re.escape, _IMAGE))), _image),
    (6, "container_gpu", _GPU, re.compile("|".join(map(re.escape, _GPU))), _gpu),
    (24, "offline_cache_miss", _OFFLINE, re.compile("|".join(map(re.escape, _OFFLINE))),
     _offline),
)
