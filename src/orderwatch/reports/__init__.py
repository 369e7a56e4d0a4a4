"""Reading the detector's output after the fact: the exception summary with MTTA/MTTR
(``summary``), the key indicators (``kpis``) and what a rule change would have raised
(``whatif``)."""
