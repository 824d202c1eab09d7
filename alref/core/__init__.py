"""What every layer of alref shares and that depends on nothing above it: the typed records passed
between layers (:mod:`alref.core.records`), the deterministic baseline decisions
(:mod:`alref.core.baseline`) and the layout of a run's folders (:mod:`alref.core.workspace`).

Nothing here imports another alref package (tested)."""
