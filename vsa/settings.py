"""Engine settings read from the environment of `ray start` (workers inherit it).

| variable | default | meaning |
|---|---|---|
| `VSA_INFERENCE_GPUS` | `auto` | GPUs the inference actor reserves: auto (1 when the cluster has one), 0, 1 |
| `VSA_TORCH_THREADS` | `1` | torch intra-op threads for a model on the CPU |
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from vsa.errors import VsaError


def inference_gpus(cluster_gpus: float, env: Mapping[str, str] | None = None) -> int:
    value = (os.environ if env is None else env).get("VSA_INFERENCE_GPUS", "auto").strip()
    if value == "auto":
        return 1 if cluster_gpus >= 1 else 0
    if value not in ("0", "1"):
        raise VsaError(f"VSA_INFERENCE_GPUS must be auto, 0 or 1, not {value!r}")
    return int(value)


def torch_threads(env: Mapping[str, str] | None = None) -> int:
    value = (os.environ if env is None else env).get("VSA_TORCH_THREADS", "1").strip()
    if not value.isdigit() or int(value) < 1:
        raise VsaError(f"VSA_TORCH_THREADS must be a positive integer, not {value!r}")
    return int(value)
