"""Device faults injected around a model, for tests and outage rehearsals.

:class:`FaultyModel` wraps a :class:`vsa.models.base.Model` and delegates to it, except that
``forward`` can fail with a device out-of-memory error (every call from then on) or block for
a while once (a hung kernel or driver). The production model object is never modified: the
inference actor puts the wrapper in the runner's place (``inject_fault``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FAULTS = ("oom", "hang")


class FaultyModel:
    def __init__(self, model: Any) -> None:
        self.inner = model
        self.name, self.classes, self.device = model.name, model.classes, model.device
        self._oom = False
        self._hang_s: float | None = None
        self._released = threading.Event()

    @classmethod
    def around(cls, model: Any) -> FaultyModel:
        """``model`` wrapped, or itself when it is wrapped already."""
        return model if isinstance(model, cls) else cls(model)

    def inject(self, kind: str, seconds: float = 0.0) -> None:
        """``oom``: every forward from now on raises out-of-memory. ``hang``: the next forward
        blocks for ``seconds``."""
        if kind == "oom":
            self._oom = True
        elif kind == "hang":
            self._hang_s = seconds
        else:
            raise ValueError(f"unknown fault {kind!r} ({', '.join(FAULTS)})")

    def preprocess(self, frames: Sequence[np.ndarray]) -> Any:
        return self.inner.preprocess(frames)

    def forward(self, batch: Any) -> Any:
        if self._oom:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by inject_fault)")
        hang, self._hang_s = self._hang_s, None
        if hang:
            self._released.wait(hang)
        return self.inner.forward(batch)

    def postprocess(self, raw: Any, batch: Any) -> Any:
        return self.inner.postprocess(raw, batch)
