"""Test doubles that ship with the engine: fault injection (``faults``, outage rehearsals use it
too) and a YOLO-layout network with random weights (``toy``, for checks without a download).
Nothing in the production path imports this package; the inference actor's ``inject_fault``
endpoint does, on demand."""
