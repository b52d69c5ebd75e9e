"""The engine's fixed periods, timeouts and limits, in one place (no imports: any module may use
them). None of them is a setting: a change here is deliberate, and tests/unit/test_constants.py
pins every value. The modules that use them import them from here (their old names stay there).
"""

from __future__ import annotations

# --- controller (actors/controller.py) ---------------------------------------------------------
POLL_S = 0.5  # a run's monitor polls its source actors this often
SUPERVISE_S = 1.0  # the supervisor checks the inference actor's health this often
HEARTBEAT_S = 1.0  # the controller marks itself alive in the state directory this often
SAVE_EVERY_S = 5.0  # a run whose state did not change is saved to the GCS at least this often
ENGINE_TIMEOUT_S = 120.0  # the longest wait for the inference actor to load a run's model
STORE_CHECK_S = 5.0  # the object store's use and spilling are checked this often
WARNING_HOLD_S = 60.0  # a warning stays in the status this long after it was last seen
METRICS_FLUSH_S = 12.0  # > Ray's metrics_report_interval_ms (10 s by default)
REAP_LEFT_S = 600.0  # after a restart, the actors of runs ended this recently are removed
KEEP_FINISHED = 50  # ended runs kept in the controller's book (and the GCS); older are forgotten

# --- status endpoint (vsa/control/endpoint.py) -------------------------------------------------
SNAPSHOT_S = 1.0  # the controller refreshes the endpoint's snapshot of every run this often
FRESH_S = 0.3  # the endpoint waits this long for the controller's own answer, then the snapshot
ENDPOINT_TIMEOUT_S = 5.0  # a client waits this long for the endpoint, then goes through Ray
ENDPOINT_READ_TIMEOUT_S = 5.0  # the endpoint closes a connection silent (or not reading) this long
ENDPOINT_MAX_CONNECTIONS = 32  # connections the endpoint serves at once, each on a thread

# --- inference (vsa/inference/engine.py) -------------------------------------------------------
FAIR_WAIT = 0.5  # several batches at once: one short of its fair share waits this many batch times
FAIR_WAIT_MAX_S = 0.25  # and never longer than this (a realtime frame goes stale at 1 s)
ALIGN_WAIT = 0.2  # a ready fair share waits this many batch times for a batch about to end

# --- supervision (vsa/supervision/watchdog.py) -------------------------------------------------
STATUS_TIMEOUT_S = 10.0  # the longest wait for a status or health answer

# --- source actor (actors/source.py) -----------------------------------------------------------
INFERENCE_WAIT_S = 120.0  # longest wait for a restarted inference actor before frames fail
DROPS_SUMMARY_S = 30.0  # a source logs a summary of its new drops at most this often

# --- stream (vsa/stream/) ----------------------------------------------------------------------
STOP_GRACE_S = 15.0  # after the drain timeout: a decode thread inside an open or read ends within
TRANSITIONS_KEPT = 100  # a source's status keeps its last this many state transitions

# --- sinks and outputs (vsa/sinks/__init__.py, vsa/outputs.py) ---------------------------------
CHECK_INTERVAL_S = 0.5  # a sink looks at its file's path at most this often while writing
MEMORY_RESERVE_BYTES = 1 << 30  # left to the rest of the host when admitting sources
