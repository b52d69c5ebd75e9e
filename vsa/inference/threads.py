"""How the model uses the CPU: concurrent batches (workers) x torch threads per batch,
chosen by measuring them while the engine runs.

On a CPU host the model's intra-op threads share the cores with the source actors (decoding
every camera frame) and Ray. One parallel region is as slow as its slowest thread, so a thread
that shares its core with a decoder holds the others back: on 2 cores with 4 RTSP cameras and
a YOLOv8n-size model, one batch at a time on 2 threads gave 3.4 frames/s and on 1 thread 4.8.
Two batches at a time, one thread each, do not wait on each other: the model alone ran at
8.8-10.4 frames/s that way against 6.5-7.5 on 2 threads (built-in model 29-35 against 19-27;
``docs/performance.md``), the way OpenVINO's throughput mode runs several inference
"streams". No fixed split is right for every host, model and load, so :class:`ThreadTuner`
tries a few in turn on the real work, keeps the one that gives the most frames per second of
busy model time, and tries again every minute and when the number of streams changes. Plain Python, no torch:
the caller applies the thread count in each model thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

log = logging.getLogger("vsa.inference")
T = TypeVar("T")

BLOCK_S = 1.5  # busy seconds measured per candidate and round
BLOCK_BATCHES = 3  # and at least this many batches (after one discarded warm-up batch)
ROUNDS = 2  # passes over the candidates, alternating, before one is chosen
HOLD_S = 60.0  # how long a choice holds before the candidates are measured again
MIN_HOLD_S = 10.0  # a change of load measures again, but not sooner than this after a choice
WORKER_COUNTS = (2, 1, 4)  # concurrent batches tried (the first is tried first)


class Split(NamedTuple):
    """Batches the model runs at once (``workers``) and torch threads each (``threads``)."""

    workers: int
    threads: int

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads}"


def splits(cpus: int, workers: int | None = None, threads: int | None = None) -> list[Split]:
    """The splits worth trying on ``cpus`` CPUs, workers x threads filling them: 2 x half,
    1 x all, 4 x a quarter. ``workers``/``threads`` pin one side (a pinned thread count
    alone keeps one worker, as before workers existed)."""
    cpus = max(1, cpus)
    if threads is not None and workers is None:
        return [Split(1, threads)]
    counts = [workers] if workers is not None else [w for w in WORKER_COUNTS if w <= cpus]
    out = [Split(w, threads if threads is not None else max(1, cpus // w)) for w in counts]
    return list(dict.fromkeys(out))


@dataclass
class _Tally:
    frames: int = 0
    seconds: float = 0.0
    batches: int = 0

    @property
    def rate(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class ThreadTuner:
    """Measures frames per busy second with each candidate split and keeps the best.

    The engine runs up to ``split.workers`` batches at once; each model thread calls
    ``run(fn, *args)``, which applies ``split.threads`` with ``apply`` when that thread's count
    differs (``torch.set_num_threads`` acts on the calling thread), then calls ``fn``. After
    each batch the engine calls ``record(frames, busy_s)``: ``busy_s`` is the wall time, since
    its previous call, during which at least one batch ran (so concurrent batches are not
    counted twice). One candidate: nothing to tune (pinned settings, a GPU, a 1-CPU host).
    ``clock`` is monotonic.
    """

    def __init__(
        self,
        candidates: Sequence[Split],
        clock: Callable[[], float],
        apply: Callable[[int], None] | None = None,
        block_s: float = BLOCK_S,
        block_batches: int = BLOCK_BATCHES,
        rounds: int = ROUNDS,
        hold_s: float = HOLD_S,
        min_hold_s: float = MIN_HOLD_S,
    ) -> None:
        if not candidates:
            raise ValueError("no split to choose from")
        self.candidates = list(dict.fromkeys(Split(*c) for c in candidates))
        self._clock = clock
        self._apply = apply
        self._applied = threading.local()  # the count each model thread runs with
        self._block_s = block_s
        self._block_batches = block_batches
        self._rounds = rounds
        self._hold_s = hold_s
        self._min_hold_s = min_hold_s
        self._load: object = None  # what the engine last said its load was (streams)
        self._load_at_choice: object = None
        self._chosen_at = 0.0
        self._allowed = list(self.candidates)  # those the load can use (``load``)
        self.split = self.candidates[0]
        self.rates: dict[Split, float] = {}  # frames per busy second, last exploration
        self.choices = 0  # explorations finished
        self._tallies: dict[Split, _Tally] = {}
        self._order: list[Split] = []  # candidates still to measure in this exploration
        self._block = _Tally()
        self._warmup = True  # the first batch after a change is not counted
        self._hold_until: float | None = None
        if len(self.candidates) > 1:
            self._explore(first=self.split)

    @property
    def max_workers(self) -> int:
        """Model threads the executor needs."""
        return max(c.workers for c in self.candidates)

    @property
    def tuning(self) -> bool:
        return len(self._allowed) > 1

    @property
    def exploring(self) -> bool:
        return self._hold_until is None and self.tuning

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """In a model thread: apply the current thread count if it changed, then ``fn(*args)``."""
        threads = self.split.threads
        if self._apply is not None and getattr(self._applied, "n", None) != threads:
            self._apply(threads)
            self._applied.n = threads
        return fn(*args)

    def load(self, key: object, max_workers: int | None = None) -> None:
        """The engine's load (e.g. how many streams send): a choice made under another load
        is measured again (not sooner than ``min_hold_s`` after it was made). ``max_workers``:
        the most batches the load can fill at once (realtime cameras have one frame in flight
        each: one camera never fills two batches); splits with more are not tried."""
        allowed = [c for c in self.candidates if max_workers is None or c.workers <= max_workers]
        allowed = allowed or [min(self.candidates, key=lambda c: c.workers)]
        if allowed != self._allowed:
            self._allowed = allowed
            self._load = key
            if len(allowed) > 1:
                self._explore(first=self.split if self.split in allowed else allowed[0])
            else:  # nothing to measure: the one split that fits
                self._switch(allowed[0])
                self._warmup = False
                self._chosen_at = self._clock()
                self._hold_until = self._chosen_at + self._hold_s
                self._load_at_choice = key
            return
        self._load = key
        if (
            self.tuning
            and self._hold_until is not None
            and key != self._load_at_choice
            and self._clock() - self._chosen_at >= self._min_hold_s
        ):
            self._explore(first=self.split)

    def record(self, frames: int, busy_s: float) -> None:
        """A batch of ``frames`` finished; ``busy_s`` of busy wall time since the last call."""
        if not self.tuning or frames <= 0 or busy_s <= 0:
            return
        if self._hold_until is not None:
            if self._clock() >= self._hold_until:
                self._explore(first=self.split)
            return
        if self._warmup:
            self._warmup = False
            return
        self._block.frames += frames
        self._block.seconds += busy_s
        self._block.batches += 1
        if self._block.seconds < self._block_s or self._block.batches < self._block_batches:
            return
        tally = self._tallies.setdefault(self.split, _Tally())
        tally.frames += self._block.frames
        tally.seconds += self._block.seconds
        tally.batches += self._block.batches
        self._block = _Tally()
        if self._order:
            self._switch(self._order.pop(0))
            return
        self._choose()

    def _explore(self, first: Split) -> None:
        rest = [c for c in self._allowed if c != first]
        # alternate (a b c a b c ...) so that a change of load hits every candidate alike
        self._order = ([first, *rest] * self._rounds)[1:]
        self._tallies = {}
        self._block = _Tally()
        self._hold_until = None
        self._switch(first)

    def _switch(self, split: Split) -> None:
        self.split = split
        self._warmup = True

    def _choose(self) -> None:
        self.rates = {c: round(t.rate, 3) for c, t in self._tallies.items()}
        # a tie: fewer workers (less memory), then fewer threads
        best = max(self.rates, key=lambda c: (self.rates[c], -c.workers, -c.threads))
        changed = best != self.split or self.choices == 0
        self._switch(best)
        self._warmup = False
        self._chosen_at = self._clock()
        self._hold_until = self._chosen_at + self._hold_s
        self._load_at_choice = self._load
        self.choices += 1
        if changed:
            log.info(
                "model split: %s batches x threads (frames per busy second: %s)",
                best,
                ", ".join(f"{c} {r:.2f}" for c, r in self.rates.items()),
            )

    def snapshot(self) -> dict[str, object]:
        """For ``stats``: the split in use, whether it is being measured, the last rates."""
        return {
            "workers": self.split.workers,
            "threads": self.split.threads,
            "candidates": [str(c) for c in self.candidates],
            "exploring": self.exploring,
            "rates": {str(c): r for c, r in self.rates.items()},
        }
