"""Every tier: no host configuration file (/etc/vsa/vsa.yaml) of the machine running the tests
leaks into them; a test that wants one names it with ``VSA_CONFIG``. Set in the environment,
so the Ray workers a test session starts inherit it too."""

import os

os.environ["VSA_CONFIG"] = ""
