"""The floor under the train steps on this machine, next to the steps themselves.

A step's floor here is its matrix products and convolutions, each timed alone with the faster
of XLA's kernel (under the current XLA_FLAGS) and PyTorch's for its shape (on all cores, or on
one core with the other core free for another op; a convolution also in 4 one-core chunks of a
quarter of the batch, as the conv GAN's discriminator runs), plus its Adam updates timed alone;
everything else a step does (activations, BatchNorm, the loss, bias gradients, the batch
gather, layout changes) counts as free, and the Adam updates are counted at the better of all
cores and one core too. No implementation that runs the same products and convolutions one by
one on these kernels can be faster than the floor, so "3x the PyTorch reference" is out of its
reach wherever the floor is slower than a third of the reference's step (the column floor /
PyTorch below 3x).

    python benchmarks/step_floor.py --models solver,mlp --batches 64,128 --json floor-mlp.json
    python benchmarks/step_floor.py --models conv --batches 64 --json floor-conv.json

Each matrix product is run `--reps`x in a jitted `fori_loop` (its input changed in one element
every iteration so nothing is hoisted) or in a PyTorch loop into a preallocated output. Each
convolution pass of the conv GAN's step (a layer's forward, input gradient or weight gradient,
found in the step's jaxpr and counted) is timed as `jax.vjp` computes it, in a jitted chain of
`--conv-reps` dependent calls (not a loop: XLA's CPU convolutions lose their fast path inside
one; a rearrangement of the fixed operand, such as the kernel's flip for the input gradient,
may then be done once per chain, and counts as free like other layout work), and as PyTorch's
autograd computes it (`aten.convolution_backward` for one gradient). One-core times come from
a child process pinned to core 0 (XLA) and from `torch.set_num_threads(1)`. An op's cost in
core-seconds is the smallest of: its all-cores time times the number of cores, its one-core
time (two one-core ops can run side by side) and, for a convolution, 4x its one-core time on a
quarter of the batch; the floor is the sum of the costs (each convolution pass times the number
of times the step runs it; the Adam updates' too) over the number of cores. The whole steps
(gr_jax's and the reference's, interleaved as in bench_steps.py) and the floor are measured in
`--rounds` rounds, one after the other (one-core times too), and each ratio is taken within a
round: this VM's speed drifts over minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).parent))

from bench_steps import bench, jax_gan_epoch, jax_solver_epoch, paired_ratios, torch_epoch
from conv_layers import LAYERS, passes

from gr_jax import gan, solver
from gr_jax.config import PRESETS
from gr_jax.provenance import environment

MODELS = ("solver", "mlp", "conv")


def step_and_state(model: str, batch: int) -> tuple[Callable, Any, tuple]:
    """The model's single train step, its state and example arguments (as bench_steps times,
    but with the discriminator's batch in one chunk: the floor counts every product at the
    whole batch, and times convolutions in chunks too)."""
    cfg = PRESETS["seed"]
    x = jnp.zeros((batch, 28, 28, 1))
    labels = jnp.zeros((batch,), jnp.int32)
    if model == "solver":
        state = solver.create_solver_state(jax.random.PRNGKey(0), cfg.solver_hidden, cfg.solver_lr)
        return solver.train_step, state, (state, x, labels)
    state = gan.create_gan_state(
        jax.random.PRNGKey(0),
        model,
        cfg.gan_width,
        cfg.latent_dim,
        cfg.gan_lr,
        cfg.gan_beta1,
        d_chunks=1,
    )
    return gan.gan_step, state, (state, x, labels, jax.random.PRNGKey(1))


def eqns_of(fn: Callable, *args: Any) -> list[tuple[Any, bool]]:
    """Every equation of `fn`'s jaxpr (nested jaxprs included), with whether it is in a loop."""
    found = []

    def walk(jaxpr, in_loop=False):
        for eqn in jaxpr.eqns:
            found.append((eqn, in_loop))
            loop = eqn.primitive.name in ("scan", "while")
            for p in eqn.params.values():
                for sub in p if isinstance(p, tuple | list) else (p,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr, in_loop or loop)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub, in_loop or loop)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def dots_of(fn: Callable, *args: Any) -> list[dict]:
    """Every `dot_general` of `fn`'s jaxpr: operand shapes and contracting dimensions. Only
    2-D products without batch dimensions (the MLPs' layers)."""
    found = []
    for eqn, in_loop in eqns_of(fn, *args):
        if eqn.primitive.name != "dot_general":
            continue
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        lhs, rhs = (v.aval for v in eqn.invars)
        if lb or rb or lhs.ndim != 2 or rhs.ndim != 2 or in_loop:
            raise NotImplementedError(f"not a plain 2-D product: {eqn}")
        found.append({"lhs": list(lhs.shape), "rhs": list(rhs.shape), "lc": lc[0], "rc": rc[0]})
    return found


def conv_signature(eqn: Any) -> tuple:
    """A convolution's operand and result shapes: what tells the passes of the layers apart."""
    return tuple(tuple(v.aval.shape) for v in (*eqn.invars, *eqn.outvars))


def conv_passes_of(fn: Callable, *args: Any, batch: int) -> Counter:
    """How many times `fn` runs each (layer index, pass) of `conv_layers.LAYERS` at `batch`;
    a convolution of no known layer pass, or inside a loop, is an error (the architecture
    changed)."""
    known = {}
    for i, (_, *shape) in enumerate(LAYERS):
        for name, (f, operands) in passes(batch, *shape).items():
            convs = [
                e for e, _ in eqns_of(f, *operands) if e.primitive.name == "conv_general_dilated"
            ]
            sig = conv_signature(convs[-1])
            if sig in known:
                raise NotImplementedError(f"two layer passes with the same shapes: {sig}")
            known[sig] = (i, name)
    counts: Counter = Counter()
    for eqn, in_loop in eqns_of(fn, *args):
        if eqn.primitive.name == "conv_general_dilated":
            sig = conv_signature(eqn)
            if in_loop:
                raise NotImplementedError(f"a convolution inside a loop: {sig}")
            if sig not in known:
                raise NotImplementedError(f"a convolution of no layer in conv_layers.LAYERS: {sig}")
            counts[known[sig]] += 1
    return counts


def mnk(d: dict) -> tuple[int, int, int]:
    m = d["lhs"][1 - d["lc"]]
    k = d["lhs"][d["lc"]]
    n = d["rhs"][1 - d["rc"]]
    return m, n, k


def seconds_per_rep(call: Callable[[], Any], reps: int, repeats: int = 5) -> float:
    """Median over `repeats` timed calls (after one untimed) of `call`'s seconds divided by
    `reps`, the operations one call runs; `call` waits for its work to finish."""
    call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) / reps)
    return float(np.median(times))


def time_dot_jax(d: dict, reps: int, repeats: int = 5) -> float:
    """Median seconds of one product with XLA's kernel."""
    a = jax.random.normal(jax.random.PRNGKey(0), d["lhs"])
    b = jax.random.normal(jax.random.PRNGKey(1), d["rhs"])
    dims = (((d["lc"],), (d["rc"],)), ((), ()))

    @jax.jit
    def loop(a, b):
        def body(i, carry):
            a, _ = carry
            a = a.at[0, 0].set(i.astype(a.dtype))
            return a, jax.lax.dot_general(a, b, dims)

        out = jax.lax.dot_general(a, b, dims)
        return jax.lax.fori_loop(0, reps, body, (a, out))[1]

    return seconds_per_rep(lambda: jax.block_until_ready(loop(a, b)), reps, repeats)


def time_dot_torch(d: dict, reps: int, threads: int, repeats: int = 5) -> float:
    """Median seconds of one product with PyTorch's kernel (transposes as views, as its
    backward pass passes them)."""
    import torch

    torch.set_num_threads(threads)
    lhs = torch.randn(*d["lhs"])
    rhs = torch.randn(*d["rhs"])
    a = lhs if d["lc"] == 1 else lhs.t()
    b = rhs if d["rc"] == 0 else rhs.t()
    out = torch.mm(a, b)

    def call() -> None:
        for _ in range(reps):
            torch.mm(a, b, out=out)

    return seconds_per_rep(call, reps, repeats)


def time_conv_jax(layer: int, name: str, batch: int, reps: int, repeats: int = 5) -> float:
    """Median seconds of one pass of a layer with XLA's kernel: `reps` dependent calls in one
    jitted chain (each call's operand takes an element of the last result)."""
    f, (a, b) = passes(batch, *LAYERS[layer][1:])[name]

    @jax.jit
    def chain(a, b):
        out = f(a, b)
        for _ in range(reps - 1):
            a = a.at[(0,) * a.ndim].set(out.ravel()[0])
            out = f(a, b)
        return out

    return seconds_per_rep(lambda: jax.block_until_ready(chain(a, b)), reps, repeats)


def time_conv_torch(
    layer: int, name: str, batch: int, reps: int, threads: int, repeats: int = 5
) -> float:
    """Median seconds of one pass of a layer as PyTorch's autograd runs it (its forward, or
    `aten.convolution_backward` for one gradient), NCHW as the reference's layers."""
    import torch

    torch.set_num_threads(threads)
    _, h, cin, cout, k, s = LAYERS[layer]
    x = torch.randn(batch, cin, h, h)
    w = torch.randn(cout, cin, k, k) * 0.1
    pad = (k - 1) // 2 if s == 1 else 1  # "SAME" for these shapes
    g = torch.ones_like(torch.nn.functional.conv2d(x, w, stride=s, padding=pad))
    mask = [name == "dx", name == "dw", False]

    def call() -> None:
        with torch.no_grad():
            for _ in range(reps):
                if name == "fwd":
                    torch.nn.functional.conv2d(x, w, stride=s, padding=pad)
                else:
                    torch.ops.aten.convolution_backward(
                        g, x, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], 1, mask
                    )

    return seconds_per_rep(call, reps, repeats)


def conv_flops(layer: int, batch: int) -> int:
    """FLOPs of one pass of a layer (forward; each gradient has as many)."""
    _, h, cin, cout, k, s = LAYERS[layer]
    out = -(-h // s)
    return 2 * batch * out * out * cout * k * k * cin


def time_adam(state: Any, reps: int, repeats: int = 5) -> float:
    """Median seconds of the step's Adam updates alone (the solver's, or D's and G's),
    gradients held fixed."""
    if isinstance(state, gan.GANState):
        trees = [state.d.params, state.g.params]
        txs = [state.d.tx, state.g.tx]
    else:
        trees, txs = [state.params], [state.tx]

    @jax.jit
    def loop(params, opts, grads):
        def body(_, carry):
            params, opts = carry
            new = []
            for p, o, g, tx in zip(params, opts, grads, txs, strict=True):
                u, o = tx.update(g, o, p)
                new.append((optax.apply_updates(p, u), o))
            return [n[0] for n in new], [n[1] for n in new]

        return jax.lax.fori_loop(0, reps, body, (params, opts))

    opts = [tx.init(p) for p, tx in zip(trees, txs, strict=True)]
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), trees)
    return seconds_per_rep(lambda: jax.block_until_ready(loop(trees, opts, grads)), reps, repeats)


def one_core(model: str, batch: int, reps: int, conv_reps: int) -> dict:
    """XLA's times (`xla_times`) of the step's products, convolution passes and Adam updates on
    one core: run in a child process pinned to core 0."""
    code = (
        "import json, os, sys; os.sched_setaffinity(0, {0}); "
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "import step_floor as s; print(json.dumps(s.xla_times(sys.argv[1], *map(int, sys.argv[2:]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, model, str(batch), str(reps), str(conv_reps)],
        stdout=subprocess.PIPE,  # its errors go to our stderr
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def xla_times(model: str, batch: int, reps: int, conv_reps: int) -> dict:
    """XLA's times of the step's products, of each convolution pass it runs (at its batch
    and at a quarter of it) and of its Adam updates, each alone."""
    fn, state, args = step_and_state(model, batch)
    return {
        "dots": [time_dot_jax(d, reps) for d in dots_of(fn, *args)],
        "convs": [
            [time_conv_jax(i, name, b, conv_reps) for b in (batch, batch // 4)]
            for i, name in sorted(conv_passes_of(fn, *args, batch=batch))
        ],
        "adam": time_adam(state, reps),
    }


def floor_of(model: str, batch: int, reps: int, conv_reps: int, cores: int, single: dict) -> dict:
    """The step's floor from its products, convolutions and Adam updates timed now on all
    cores, and on one core (`single`, from `one_core`)."""
    fn, state, args = step_and_state(model, batch)
    rows = []
    for d, j1 in zip(dots_of(fn, *args), single["dots"], strict=True):
        row = {
            "m_n_k": list(mnk(d)),
            "xla": time_dot_jax(d, reps),
            "torch": time_dot_torch(d, reps, cores),
            "xla_1core": j1,
            "torch_1core": time_dot_torch(d, reps, 1),
        }
        row["core_seconds"] = min(
            cores * row["xla"], cores * row["torch"], row["xla_1core"], row["torch_1core"]
        )
        rows.append(row)
    convs = []
    passes = conv_passes_of(fn, *args, batch=batch)
    for (i, name), (x1, x1_quarter) in zip(sorted(passes), single["convs"], strict=True):
        quarter = batch // 4
        row = {
            "layer": LAYERS[i][0],
            "pass": name,
            "count": passes[i, name],
            "xla": time_conv_jax(i, name, batch, conv_reps),
            "torch": time_conv_torch(i, name, batch, conv_reps, cores),
            "xla_1core": x1,
            "torch_1core": time_conv_torch(i, name, batch, conv_reps, 1),
            "xla_1core_quarter": x1_quarter,
            "torch_1core_quarter": time_conv_torch(i, name, quarter, conv_reps, 1),
        }
        row["core_seconds"] = min(
            cores * row["xla"],
            cores * row["torch"],
            row["xla_1core"],
            row["torch_1core"],
            4 * row["xla_1core_quarter"],
            4 * row["torch_1core_quarter"],
        )
        convs.append(row)
    adam = time_adam(state, reps)
    adam_core_seconds = min(cores * adam, single["adam"])
    core_seconds = sum(r["core_seconds"] for r in rows) + adam_core_seconds
    core_seconds += sum(r["count"] * r["core_seconds"] for r in convs)
    return {
        "dots": rows,
        "convs": convs,
        "adam": adam,
        "adam_1core": single["adam"],
        "floor": core_seconds / cores,
        "flops_of_dots": sum(2 * r["m_n_k"][0] * r["m_n_k"][1] * r["m_n_k"][2] for r in rows),
        "flops_of_convs": sum(n * conv_flops(i, batch) for (i, _), n in passes.items()),
    }


def measure(model: str, batch: int, args: argparse.Namespace, cores: int) -> dict:
    """`args.rounds` rounds, each the two steps (interleaved) and then the floor (one-core
    times included), so that every ratio compares times taken a minute or two apart at most on
    a machine whose speed drifts."""
    import torch

    make = jax_solver_epoch if model == "solver" else (lambda b, s: jax_gan_epoch(model, b, s))
    rounds = []
    for _ in range(args.rounds):
        torch.set_num_threads(cores)
        times = bench(
            {"jax": make, "torch": lambda b, s: torch_epoch(model, b, s)},
            batch,
            args.steps,
            args.step_reps,
        )
        single = one_core(model, batch, args.reps, args.conv_reps)
        r = floor_of(model, batch, args.reps, args.conv_reps, cores, single)
        torch.set_num_threads(cores)
        r["jax_step"] = float(np.median(times["jax"])) / args.steps
        r["torch_step"] = float(np.median(times["torch"])) / args.steps
        r["speedup_vs_torch"] = float(np.median(paired_ratios(times["torch"], times["jax"])))
        r["floor_vs_torch"] = r["torch_step"] / r["floor"]
        r["jax_of_floor_speed"] = r["floor"] / r["jax_step"]
        rounds.append(r)
    keys = ("jax_step", "torch_step", "floor", "speedup_vs_torch", "floor_vs_torch")
    summary = {k: float(np.median([r[k] for r in rounds])) for k in keys + ("jax_of_floor_speed",)}
    summary["ranges"] = {k: [min(r[k] for r in rounds), max(r[k] for r in rounds)] for k in keys}
    return {"rounds": rounds, **summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="64", help="comma-separated batch sizes")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--reps", type=int, default=200, help="products per timed loop")
    p.add_argument("--conv-reps", type=int, default=10, help="convolutions per timed chain")
    p.add_argument("--steps", type=int, default=50, help="steps per timed repetition")
    p.add_argument("--step-reps", type=int, default=5, help="interleaved step repetitions")
    p.add_argument("--rounds", type=int, default=3, help="rounds of steps, then floor")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if any(b % 4 for b in batches):
        p.error(
            f"--batches: multiples of 4 (convolutions are timed in quarters too), got {batches}"
        )
    import torch

    env = environment()
    cores = env["cpu_cores"]
    env["torch"] = torch.__version__
    print(
        f"# {env['device_kind']}, {cores} cores, jax {env['packages']['jax']}, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}; medians of {args.rounds} rounds"
    )
    out = {"environment": env, "args": vars(args), "results": []}
    summary = []
    for batch in batches:
        for model in args.models.split(","):
            if model not in MODELS:
                raise SystemExit(f"--models: one of {MODELS}, got {model!r}")
            r = measure(model, batch, args, cores)
            out["results"].append({"model": model, "batch": batch, **r})
            last = r["rounds"][-1]
            print(f"\n## {model}, batch {batch}: the step's matrix products, last round (ms each)")
            print("| m x n x k | XLA | PyTorch | XLA 1 core | PyTorch 1 core | core-ms counted |")
            print("|---|---|---|---|---|---|")
            for d in last["dots"]:
                ms = [d[c] * 1e3 for c in ("xla", "torch", "xla_1core", "torch_1core")]
                print(
                    f"| {' x '.join(map(str, d['m_n_k']))} | "
                    + " | ".join(f"{v:.3f}" for v in ms)
                    + f" | {d['core_seconds'] * 1e3:.3f} |"
                )
            if last["convs"]:
                print(
                    f"\n## {model}, batch {batch}: the step's convolutions, last round (ms each; "
                    f"quarter: batch {batch // 4}, one core)"
                )
                print(
                    "| layer | pass | per step | XLA | PyTorch | XLA 1 core | PyTorch 1 core "
                    "| XLA quarter | PyTorch quarter | core-ms counted |"
                )
                print("|---|---|---|---|---|---|---|---|---|---|")
                for c in last["convs"]:
                    cols = ("xla", "torch", "xla_1core", "torch_1core")
                    cols += ("xla_1core_quarter", "torch_1core_quarter")
                    print(
                        f"| {c['layer']} | {c['pass']} | {c['count']} | "
                        + " | ".join(f"{c[k] * 1e3:.3f}" for k in cols)
                        + f" | {c['core_seconds'] * 1e3:.3f} |"
                    )
            print(
                f"Adam updates alone: {last['adam'] * 1e3:.3f} ms ({last['adam_1core'] * 1e3:.3f} "
                "on one core)."
            )
            summary.append((model, batch, r))
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1))
    print(
        "\n| model | batch | floor ms (samples/s) | gr_jax ms | PyTorch ms | gr_jax / PyTorch "
        "| floor / PyTorch | gr_jax of the floor's speed |\n|---|---|---|---|---|---|---|---|"
    )
    for model, batch, r in summary:
        lo, hi = r["ranges"]["floor_vs_torch"]
        slo, shi = r["ranges"]["speedup_vs_torch"]
        print(
            f"| {model} | {batch} | {r['floor'] * 1e3:.3f} ({batch / r['floor']:,.0f}) | "
            f"{r['jax_step'] * 1e3:.3f} | {r['torch_step'] * 1e3:.3f} | "
            f"{r['speedup_vs_torch']:.2f}x ({slo:.2f}-{shi:.2f}) | "
            f"{r['floor_vs_torch']:.2f}x ({lo:.2f}-{hi:.2f}) | {r['jax_of_floor_speed']:.0%} |"
        )


if __name__ == "__main__":
    main()
