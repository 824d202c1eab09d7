"""A run's trace: recording (:mod:`.record`), listing runs (:mod:`.runs`), cost (:mod:`.cost`), the
terminal tree (:mod:`.view`), the HTML page (:mod:`.html`) and the ``alref trace`` commands (:mod:`.cli`).

Imports point one way: record ← cost ← runs ← view/html ← cli."""
