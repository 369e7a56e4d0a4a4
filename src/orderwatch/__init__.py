"""orderwatch: a streaming detector of e-commerce order exceptions.

The package is split so the architecture is visible from the tree:

- ``orderwatch.events``  the public contract as pydantic models (input events, exception events)
- ``orderwatch.engine``  the pure rule engine: events and a clock in, exception events out
- ``orderwatch.agents``  the Faust shell (topics, tables, timers) around the engine
- ``orderwatch.cli``     the command line (worker, replay, broker, simulate, schemas, rules check)
"""

__version__ = "0.1.0"
