"""The control plane's own paths, kept off the data plane's (Ray-free).

- :mod:`vsa.control.endpoint`: the controller's status endpoint, a small HTTP server on
  127.0.0.1 in a thread of its own, protected by a token in a file only its user can read;
  ``vsa status``, ``vsa list`` and ``--follow`` read it without starting a Ray driver;
- :mod:`vsa.control.priority`: data-plane actors (sources, inference) lower their scheduling
  priority, so that a saturated host slows frames, not answers.
"""
