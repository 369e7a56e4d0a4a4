"""Each family of injected anomalies, as a part of the ``Simulator`` (``simulation/traffic.py``).

A part plans its anomalies (``_inject_*``: what to emit, when, and the exceptions they must
produce) and holds the lifecycles that differ from a healthy journey (``journeys.py``).
"""
