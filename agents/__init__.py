"""The Faust shell around the pure engine, installed as ``orderwatch.agents``.

Only Faust lives here: the app, its topics, tables, agents and timers. Every decision is made by
``orderwatch.engine``; this package moves bytes between Kafka and that engine and persists state.
"""
