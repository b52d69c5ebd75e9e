"""Core types shared by sources, models, sinks and actors.

Numpy and the standard library only: no torch, PyAV, OpenCV or Ray at import time, so the
modules that only pass frames and detections around (sinks, the stream worker, the
controller) do not load the heavy stacks.
"""
