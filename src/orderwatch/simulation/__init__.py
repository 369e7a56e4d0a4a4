"""Everything that pretends to be the shop around the detector, never part of it: synthetic
traffic with anomalies injected on purpose (``traffic``), the demo's operators acting on
exceptions (``operators``) and the demo's executor of remediation actions (``executor``)."""
