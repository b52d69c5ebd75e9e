"""Test doubles and fault injection that ship with the engine (outage rehearsals use them too).
Nothing in the production path imports this package; the inference actor's ``inject_fault``
endpoint does, on demand."""
