"""Scene analytics on a stream's results: a multi-object tracker (``tracker``) and line and
zone counters (``counting``), run as the stream's processors (``vsa.stream.processors``) on
its sink thread, in frame order. ``geometry`` is the plane geometry they share with the run
file's checks; ``resume`` finds a restarted stream's counts and track ids in its files.

Importing this package imports nothing heavy: the tracker library (``trackers``) is imported
when a tracker is made. See docs/analytics.md.
"""
