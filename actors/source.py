"""The source actor: one per stream, a Ray shell around ``vsa.stream.StreamWorker``.

Frames go to the object store with ``ray.put`` (this actor owns them) and their
references to the inference actor; results come back to this actor, which keeps
the decoded frames locally and writes the stream's sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import ray

from vsa.config import RunSpec
from vsa.sinks import FrameResult, open_sinks
from vsa.sources import Frame, SourceOptions
from vsa.stream import StreamWorker


class _RayPending:
    def __init__(self, ref: ray.ObjectRef) -> None:
        self.ref = ref

    def result(self, timeout: float) -> Sequence[FrameResult]:
        return ray.get(self.ref, timeout=timeout)

    def cancel(self) -> None:
        """Withdraw the frames from the inference queue (they were counted as dropped)."""
        try:
            ray.cancel(self.ref)
        except Exception:  # noqa: BLE001 - already finished or the actor is gone
            pass


@ray.remote(num_cpus=0, max_concurrency=4)
class SourceActor:
    def __init__(
        self, run_id: str, run: dict[str, Any], source_id: str, inference: Any, engine_key: str
    ) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        spec = RunSpec.model_validate(run)
        source = next(s for s in spec.sources if s.id == source_id)
        self._inference, self._key = inference, engine_key
        self._stream_key = f"{run_id}/{source_id}"
        self.worker = StreamWorker(
            run_id,
            source_id,
            source.uri,
            lambda fps: open_sinks(spec.sinks, spec.output_dir, run_id, source_id, fps),
            self._submit,
            max_in_flight=source.max_in_flight,
            reconnect=source.reconnect,
            options=SourceOptions.from_spec(source),
        )
        self.worker.start()

    def _submit(self, frames: list[Frame]) -> _RayPending:
        refs = [ray.put(frame.image) for frame in frames]
        ref = self._inference.infer.options(enable_task_events=False).remote(
            self._key, self._stream_key, [f.index for f in frames], refs
        )
        return _RayPending(ref)

    def status(self) -> dict[str, Any]:
        return self.worker.status()

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        self.worker.stop(timeout_s)
        return self.worker.status()
