"""Wall-clock timing helper: the time JAX spends compiling inside a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def compile_seconds() -> Iterator[list[float]]:
    """Accumulate the seconds JAX spends tracing, lowering and compiling inside the block.

    Yields a one-element list whose value grows while the block runs (read it afterwards).
    """
    total = [0.0]

    def listener(event: str, duration: float, *args, **kwargs) -> None:
        if event.startswith("/jax/core/compile/"):
            total[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield total
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
