"""Fault injection for the resume tests: a kill or a Ctrl-C at a named point of a run."""

from __future__ import annotations

import os
import signal

ENV = "GR_JAX_FAULT"


def point(task: int, phase: str) -> None:
    """A named point: `GR_JAX_FAULT=TASK:PHASE` (task 1-based) makes the process kill itself
    with SIGKILL when task TASK reaches PHASE; `TASK:PHASE:int` sends it SIGINT instead (a
    Ctrl-C that arrives at a known point). Without the variable, nothing."""
    fault = os.environ.get(ENV)
    if fault == f"{task + 1}:{phase}":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == f"{task + 1}:{phase}:int":
        os.kill(os.getpid(), signal.SIGINT)
