"""Where the time of a jitted GAN step goes, op by op, from a JAX profiler trace.

    python benchmarks/profile_step.py --model conv
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \\
        python benchmarks/profile_step.py --model conv    # `gr-jax run --cpu-convs eigen`

Runs one epoch of `--steps` GAN steps as `bench_steps.py` does (the seed preset's GAN), traced
by `jax.profiler` after two untraced warm-up epochs, and reads the trace's per-op events (XLA's
CPU runtime records one per executed HLO op, with the program's run id; an op it runs
asynchronously, as it does Eigen's convolutions, counts until its "end" event). Per step,
medians over the traced steps: the span from the first op's start to the last op's end, the
time in which at least one op is in flight ("busy"), what is left ("idle": the runtime between
ops, nothing running), and the ops' summed time by kind, then the costliest ops. Ops overlap
(two threads, the discriminator's chunks side by side, asynchronous ops waiting for a thread),
so the summed times exceed the span; their shares say where the work is. The profiler adds a
little overhead: compare profiles with each other, not with `bench_steps.py`'s times.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import numpy as np
from bench_steps import jax_gan_epoch

# the first pattern that matches an op's name gives its kind
KINDS = [
    ("convolution (XLA / Eigen)", r"^(conv_general_dilated|convolution)"),
    ("YNNPACK fusion (convolution)", r"^ynn_fusion"),
    ("matmul", r"^dot"),
    ("layout copy / transpose", r"transpose|copy"),
    ("other (elementwise, reductions, gathers)", r""),
]


def kind_of(op: str) -> str:
    return next(name for name, pattern in KINDS if re.search(pattern, op))


def op_events(trace_dir: str, module: str) -> list[dict]:
    """The trace's per-op events of the jitted program `module`, each with "dur" running to
    its op's completion: an op the runtime runs asynchronously (an Eigen convolution, say)
    returns at once, and a later "end: <op>" event marks when it finished."""
    (path,) = glob.glob(f"{trace_dir}/**/*perfetto_trace.json.gz", recursive=True)
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    spans = [e for e in events if e.get("ph") == "X"]
    ops = [
        dict(e)
        for e in spans
        if e.get("args", {}).get("hlo_module") == module
        and "hlo_op" in e["args"]
        and not e["name"].startswith("end: ")
    ]
    ends = collections.defaultdict(list)
    for e in spans:
        if e["name"].startswith("end: "):
            ends[e["name"].removeprefix("end: ")].append(e["ts"] + e["dur"])
    for times in ends.values():
        times.sort()
    for e in sorted(ops, key=lambda e: e["ts"]):
        times = ends.get(e["name"], [])
        i = bisect.bisect_left(times, e["ts"])
        if i < len(times):
            e["dur"] = max(e["dur"], times.pop(i) - e["ts"])
    return ops


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    total, cur_start, cur_end = 0.0, *sorted(intervals)[0]
    for start, end in sorted(intervals)[1:]:
        if start > cur_end:
            total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return total + cur_end - cur_start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="conv", choices=["conv", "mlp"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--top", type=int, default=12, help="how many of the costliest ops to list")
    args = p.parse_args()

    epoch = jax_gan_epoch(args.model, args.batch, args.steps)
    epoch()
    epoch()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            epoch()
        events = op_events(trace_dir, "jit_step_at")
    runs = collections.defaultdict(list)
    for e in events:
        runs[e["args"]["run_id"]].append(e)
    if len(runs) < args.steps:
        raise SystemExit(f"the trace holds {len(runs)} steps' ops, expected {args.steps}")

    def per_step(fn) -> float:
        """Median over steps of `fn(events of one step)`, in ms (trace times are in us)."""
        return float(np.median([fn(evs) for evs in runs.values()])) / 1e3

    span = per_step(lambda evs: max(e["ts"] + e["dur"] for e in evs) - min(e["ts"] for e in evs))
    busy = per_step(lambda evs: busy_time([(e["ts"], e["ts"] + e["dur"]) for e in evs]))
    by_kind = {
        k: per_step(lambda evs, k=k: sum(e["dur"] for e in evs if kind_of(e["name"]) == k))
        for k, _ in KINDS
    }
    by_op = collections.Counter()
    for e in events:
        by_op[e["name"]] += e["dur"] / len(runs) / 1e3

    print(
        f"{args.model} GAN step, batch {args.batch}, {len(runs)} traced steps on {jax.devices()[0]}"
    )
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print("\n| per step (median) | ms | of span |\n|---|---|---|")
    print(f"| span (first op start to last op end) | {span:.2f} | 100% |")
    print(f"| busy (some op running) | {busy:.2f} | {busy / span:.0%} |")
    print(f"| idle (between ops) | {span - busy:.2f} | {(span - busy) / span:.0%} |")
    for k, ms in by_kind.items():
        print(f"| ops in flight, summed: {k} | {ms:.2f} | {ms / span:.0%} |")
    print("\n| costliest ops | ms in flight per step | kind |\n|---|---|---|")
    for op, ms in by_op.most_common(args.top):
        print(f"| {op} | {ms:.2f} | {kind_of(op)} |")


if __name__ == "__main__":
    main()
