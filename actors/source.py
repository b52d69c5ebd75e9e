"""The source actor: one per stream, a Ray shell around ``vsa.stream.StreamWorker``.

Frames go to the object store with ``ray.put`` (this actor owns them) and their
references to the inference actor; results come back to this actor, which keeps
the decoded frames locally and writes the stream's sinks.

Source actors are detached (they outlive a controller restart) and restartable
(``max_restarts=-1``): when Ray restarts one, it continues its run's files (JSONL
appended, numbering goes on, video in a new segment) and reconnects by its policy.
When the inference actor dies, frames wait for the controller to hand over the new
one (``set_inference``) instead of failing one by one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import ray

from actors.frames import FrameSender, this_actor_restarted
from actors.metrics import StreamMetrics
from vsa import settings
from vsa.analytics.chain import processors_for
from vsa.analytics.resume import saved_state
from vsa.config import RunSpec, writes_truth
from vsa.constants import DROPS_SUMMARY_S, INFERENCE_WAIT_S
from vsa.control.priority import lower_data_plane
from vsa.core.frames import Frame
from vsa.secrets import unseal
from vsa.sinks import open_sinks, output_paths
from vsa.sinks.jsonl import count_all_lines, last_record
from vsa.sources import SourceOptions, open_source
from vsa.sources.base import input_identity
from vsa.sources.errors import SourceError
from vsa.stream import StreamSettings, StreamWorker
from vsa.stream.outputs import EarlierOutputs
from vsa.stream.preview import Preview, PreviewSink
from vsa.uri import file_path, scheme_of

log = logging.getLogger("vsa.source")


def _failing_opener(error: SourceError) -> Any:
    def opener(uri: str, options: SourceOptions) -> Any:
        raise error

    return opener


@ray.remote(num_cpus=0, max_concurrency=4)
class SourceActor:
    def __init__(
        self,
        run_id: str,
        run: dict[str, Any],
        source_id: str,
        inference: Any,
        engine_key: str,
        sealed_uri: str | None = None,
        resume: bool = False,
        carried: dict[str, Any] | None = None,
    ) -> None:
        """``run`` holds masked URIs; ``sealed_uri`` is this source's URI with its credentials,
        sealed by the controller (``vsa.secrets``) and opened only here. ``resume``: continue the
        run's files like a restarted actor (the controller recreates a lost actor with it);
        ``carried``: then, the source's last saved status (its counters over every earlier
        incarnation, the ``input`` file's identity), so that files deleted and an input file
        replaced while the engine was down are found."""
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        lower_data_plane()  # a saturated host slows frames, not the control plane
        spec = RunSpec.model_validate(run)
        source = next(s for s in spec.sources if s.id == source_id)
        self._inference, self._key = inference, engine_key
        self._inference_ok = threading.Event()
        self._inference_ok.set()
        self._stream_key = f"{run_id}/{source_id}"
        self.incarnation = f"{os.getpid()}-{time.time():.3f}"
        restarted = this_actor_restarted() or resume
        offset = 0
        self.resumed: dict[str, int] | None = None
        options = SourceOptions.from_spec(source)
        if restarted:
            jsonl = Path(spec.output_dir) / f"{source_id}.jsonl"
            try:
                last = last_record(jsonl, run_id)
                offset = 0 if last is None else int(last["frame"]) + 1
                if last is not None:  # what earlier incarnations wrote: the controller's base
                    self.resumed = {"frame": offset, "emitted": count_all_lines(jsonl)}
                    pts = last.get("pts")
                    if isinstance(pts, int | float):
                        # a file (also over HTTP) or generator is read again from where its JSONL
                        # ends, so every frame is written once across restarts; an endless
                        # stream (a camera) ignores it and just goes on live
                        options.resume_after_pts = float(pts)
            except Exception as exc:  # noqa: BLE001 - never fail the constructor (Ray would retry it forever)
                log.error("run=%s source=%s cannot read %s: %s", run_id, source_id, jsonl, exc)
                offset, self.resumed = 0, None
            log.warning(
                "run=%s source=%s restarted by Ray: files continue at frame %d%s",
                run_id,
                source_id,
                offset,
                ""
                if options.resume_after_pts is None
                else f", the source after {options.resume_after_pts:.3f} s",
            )
        carried = carried if restarted else None
        # a local input file's identity: a resumed run checks it is still the file it read
        self.input: dict[str, Any] | None = None
        if scheme_of(source.uri) == "file":
            expected = (carried or {}).get("input")
            if isinstance(expected, dict):
                options.expect_input = self.input = expected  # checked when the source opens
            else:
                try:
                    self.input = input_identity(file_path(source.uri))
                except OSError:  # unreadable: opening it says why
                    self.input = None
        earlier = None
        if carried:  # the files the carried counters say hold frames must still be there
            earlier = EarlierOutputs(
                int(carried.get("frames_emitted") or 0),
                output_paths(spec.sinks, spec.output_dir, source_id),
            )
        uri, opener = source.uri, open_source
        if sealed_uri is not None:
            try:
                uri = unseal(sealed_uri)
            except Exception as exc:  # noqa: BLE001 - a VsaError says what to do; anything else too
                opener = _failing_opener(SourceError("SECRET_UNAVAILABLE", str(exc)))
        processor_state = None
        if restarted and source.tracked is not None:  # ids above those written, counts go on
            try:
                processor_state = saved_state(Path(spec.output_dir), run_id, source_id)
            except Exception as exc:  # noqa: BLE001 - never fail the constructor
                log.error(
                    "run=%s source=%s cannot read its analytics files: %s", run_id, source_id, exc
                )
        self._preview = Preview()  # the live page's pictures, made only while watched
        self.worker = StreamWorker(
            run_id,
            source_id,
            uri,
            lambda fps: [
                PreviewSink(self._preview),
                *open_sinks(
                    spec.sinks,
                    spec.output_dir,
                    run_id,
                    source_id,
                    fps,
                    resume=restarted,
                    events=bool(source.lines or source.zones),
                    truth=writes_truth(source.uri),
                ),
            ],
            self._submit,
            StreamSettings.from_spec(
                source,
                spec.degradation.window_s,
                options=options,
                index_offset=offset,
                earlier=earlier,
                processors=(lambda: processors_for(source)) if source.tracked else None,
                processor_state=processor_state,
            ),
            opener=opener,
            on_emit=self._emitted,
        )
        self._priority = source.priority
        self._sender = FrameSender(
            self._stream_key, self.worker.settings.most_in_flight, settings.transport()
        )
        self._frame_bytes = 0
        self.metrics = StreamMetrics(run_id, source_id)
        self.worker.start()
        if self.worker.carried_lost:  # earlier files gone: counted here, not by the carry-over
            self.resumed = {**(self.resumed or {}), "output_lost": self.worker.carried_lost}
        threading.Thread(target=self._report, name="metrics", daemon=True).start()

    def _emitted(self, frame: Frame, latency_s: float) -> None:
        self._frame_bytes = frame.image.nbytes
        self.metrics.frame_emitted(latency_s, frame.decode_s)

    def _report(self) -> None:
        """Every second: metrics from the worker's counters; every 30 s: a drops summary line."""
        last_summary, last_drops = time.monotonic(), {}
        while True:
            done = self.worker.done
            status = self.worker.status()
            try:
                writer = self.worker.writer
                cpu = {"decode": writer.decode_cpu_s, "sinks": writer.sinks_cpu_s}
                self.metrics.update(status, self._frame_bytes, cpu)
            except Exception:  # noqa: BLE001 - metrics never break a stream
                log.exception("metrics update failed")
            if time.monotonic() - last_summary >= DROPS_SUMMARY_S:
                drops = status["drops"]
                new = {k: v - last_drops.get(k, 0) for k, v in drops.items()}
                new = {k: v for k, v in new.items() if v}
                if new:
                    log.info(
                        "run=%s source=%s drops in the last %.0f s: %s (total %s)",
                        self.worker.run_id,
                        self.worker.source_id,
                        DROPS_SUMMARY_S,
                        new,
                        drops,
                    )
                last_summary, last_drops = time.monotonic(), dict(drops)
            if done:
                return  # the final counts are in
            time.sleep(1.0)

    def _inference_lost(self) -> None:
        self._inference_ok.clear()

    def set_inference(self, inference: Any, engine_key: str) -> None:
        """The controller restarted the inference actor: use the new one."""
        self._inference, self._key = inference, engine_key
        self._inference_ok.set()

    def _submit(
        self,
        frames: list[Frame],
        deadlines: list[float] | None,
        credit: int | None,
        behind: bool | None = None,
    ) -> Any:
        """Send frames with their delivery's terms (``vsa.stream.delivery``), once an inference
        actor is there."""
        deadline = time.monotonic() + INFERENCE_WAIT_S
        while not self._inference_ok.wait(0.2):
            if self.worker.stopping.is_set() or time.monotonic() > deadline:
                raise RuntimeError("the inference actor is gone and no new one was handed over")
        return self._sender.send(
            self._inference,
            self._key,
            frames,
            deadlines,
            self._priority,
            self._inference_lost,
            credit,
            behind,
        )

    def preview(self) -> bytes | None:
        """The stream's newest annotated picture (JPEG) for the live page, None before the
        first; asking marks the stream as watched, so it makes pictures for a few seconds
        (``vsa.stream.preview``)."""
        picture = self._preview.watch()
        return None if picture is None else picture.jpeg

    def status(self) -> dict[str, Any]:
        lower_data_plane()  # threads started since the last status follow too
        return {
            **self.worker.status(),
            "incarnation": self.incarnation,
            "resumed": self.resumed,
            "input": self.input,
            "transport": self._sender.transport,
        }

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop and return the final status (terminal, exact counts) within ``timeout_s`` plus
        the worker's grace for a read in progress."""
        self.worker.stop(timeout_s)
        self._sender.close()  # its ring's file goes with it
        return self.status()
