"""How a long-running process of this project sets Python's garbage collector."""

from __future__ import annotations

import gc

# Young-generation collections after this many new container objects (Python's default is
# 700). A request or a batch of events allocates thousands of short-lived objects: with the
# default, the order-entry benchmark's `salesbook run` spent 15% of its CPU in the collector
# (gc.callbacks, 2,075 young and 17 full collections in 28 s of CPU), with this 1.6%; a
# subscription catching up (bench/consumers.py) applied 28-38% more events a second.
YOUNG_COLLECTION_THRESHOLD = 50_000


def tune_garbage_collection() -> None:
    """Once a process has started: what it has built so far (modules, routes, pools) lives
    as long as the process, so it is moved out of the collector's sight (gc.freeze), and
    young collections run less often. Reference counting still frees everything without
    cycles at once; only cyclic garbage waits for a collection."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
