"""Equinox and Flax NNX models with a jaxnn head: hand gradients beside pure autodiff.

Usage: python scripts/bench_interop.py [--rounds 7] [--steps 200] [--batch 128] [--json PATH]

The models of docs/interop.md, written as there, without an adapter line: features (a
Linear of 64, tanh), then a head 64-128-128-10 relu held as each framework holds a
dense stack (an ``eqx.nn.MLP``; an ``nnx.List`` of ``nnx.Linear``), softmax
cross-entropy on integer labels (optax), Adam, float32. Three heads per framework,
from the same weights:

  hand     jaxnn.rows.network_with_hand_gradients: BP1-BP4 for the head, autodiff upstream
  jaxnn    jaxnn.rows.predict under autodiff: the same forward pass, jax.grad's backward
  native   the framework's own head (eqx.nn.MLP under vmap; the nnx.Linear layers), autodiff

Two timings of a training step (value, gradients, Adam update):

  call     one jitted step per Python call (eqx.filter_jit, nnx.jit), as docs/interop.md
  scan     ``steps`` steps inside one jax.jit (lax.scan): the computation alone

Each round times every contender once, in an order rotated from round to round; the
table gives each one's median over the rounds (microseconds per step) and the median
(and range) of its per-round ratio to native. Before timing, each contender's first gradients are
checked against native's (float32, 1e-4 of each leaf's scale). The load average (1
minute) is printed before and after: other work on the machine slows every contender.
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn import rows

N_X, SIZES, CLASSES = 64, (64, 128, 128, 10), 10
HEAD = jaxnn.Network(SIZES, ("relu", "relu", "linear"))  # a block: logits out, no loss
HEADS = ("hand", "jaxnn", "native")


def loss_of(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def equinox_contenders(X, y, steps):
    """{(head, timing): run(k) -> seconds for k steps}, and each head's first gradients."""
    import equinox as eqx

    hand = rows.network_with_hand_gradients(HEAD)
    heads = {
        "hand": lambda mlp, A: hand(jaxnn.from_equinox(mlp), A),
        "jaxnn": lambda mlp, A: rows.predict(jaxnn.from_equinox(mlp), A, HEAD),
        "native": lambda mlp, A: jax.vmap(mlp)(A),
    }

    class Model(eqx.Module):
        features: eqx.nn.Linear
        head: eqx.nn.MLP

        def __call__(self, X, head):
            return heads[head](self.head, jax.nn.tanh(jax.vmap(self.features)(X)))

    def loss(model, head):
        return loss_of(model(X, head), y)

    def fresh():
        return Model(
            eqx.nn.Linear(N_X, SIZES[0], key=jax.random.key(1)),
            eqx.nn.MLP(SIZES[0], CLASSES, 128, 2, activation=jax.nn.relu, key=jax.random.key(2)),
        )

    optimizer = optax.adam(1e-3)

    @eqx.filter_jit
    def step(model, opt_state, head):
        value, grads = eqx.filter_value_and_grad(loss)(model, head)
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), opt_state, value

    runs, first = {}, {}
    for head in HEADS:
        model = fresh()
        first[head] = eqx.filter_grad(loss)(model, head)
        state = [model, optimizer.init(eqx.filter(model, eqx.is_array))]

        def call(k, state=state, head=head):
            start = time.perf_counter()
            for _ in range(k):
                state[0], state[1], value = step(state[0], state[1], head)
            jax.block_until_ready(value)
            return time.perf_counter() - start

        params, static = eqx.partition(model, eqx.is_array)

        @jax.jit
        def many(params, opt_state, static=static, head=head):
            def body(params_and_state, _):
                params, opt_state = params_and_state
                value, grads = eqx.filter_value_and_grad(loss)(eqx.combine(params, static), head)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (eqx.apply_updates(params, updates), opt_state), value

            return jax.lax.scan(body, (params, opt_state), None, length=steps)

        carry = [(params, optimizer.init(params))]

        def scan(k, carry=carry, many=many):
            start = time.perf_counter()
            for _ in range(k // steps):
                carry[0], values = many(*carry[0])
            jax.block_until_ready(values)
            return time.perf_counter() - start

        runs[head, "call"], runs[head, "scan"] = call, scan
    return runs, {h: eqx.filter(g, eqx.is_array) for h, g in first.items()}


def nnx_contenders(X, y, steps):
    """As ``equinox_contenders``, for Flax NNX."""
    from flax import nnx

    hand = rows.network_with_hand_gradients(HEAD)

    def native(layers, A):
        for i, layer in enumerate(layers):
            A = layer(A)
            A = jax.nn.relu(A) if i < len(layers) - 1 else A
        return A

    heads = {
        "hand": lambda layers, A: hand(jaxnn.from_flax(layers), A),
        "jaxnn": lambda layers, A: rows.predict(jaxnn.from_flax(layers), A, HEAD),
        "native": native,
    }

    class Model(nnx.Module):
        def __init__(self, head, rngs):
            self.features = nnx.Linear(N_X, SIZES[0], rngs=rngs)
            pairs = itertools.pairwise(SIZES)
            self.head = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
            self.head_fn = heads[head]

        def __call__(self, X):
            return self.head_fn(self.head, jax.nn.tanh(self.features(X)))

    def loss(model):
        return loss_of(model(X), y)

    def train_step(model, optimizer):
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    step = nnx.jit(train_step)
    runs, first = {}, {}
    for head in HEADS:
        model = Model(head, nnx.Rngs(0))
        first[head] = nnx.grad(loss)(model)
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

        def call(k, model=model, optimizer=optimizer):
            start = time.perf_counter()
            for _ in range(k):
                value = step(model, optimizer)
            jax.block_until_ready(value)
            return time.perf_counter() - start

        twin = Model(head, nnx.Rngs(0))
        graphdef, state = nnx.split((twin, nnx.Optimizer(twin, optax.adam(1e-3), wrt=nnx.Param)))

        @jax.jit
        def many(state, graphdef=graphdef):
            def body(state, _):
                model, optimizer = nnx.merge(graphdef, state)
                value = train_step(model, optimizer)
                return nnx.state((model, optimizer)), value

            return jax.lax.scan(body, state, None, length=steps)

        carry = [state]

        def scan(k, carry=carry, many=many):
            start = time.perf_counter()
            for _ in range(k // steps):
                carry[0], values = many(carry[0])
            jax.block_until_ready(values)
            return time.perf_counter() - start

        runs[head, "call"], runs[head, "scan"] = call, scan
    return runs, first


def check_gradients(first: dict, framework: str) -> None:
    """Each head's first gradients against native's: float32, 1e-4 of each leaf's scale."""
    expected = jax.tree.leaves(first["native"])
    for head in ("hand", "jaxnn"):
        got = jax.tree.leaves(first[head])
        assert len(got) == len(expected), (framework, head)
        for a, b in zip(got, expected, strict=True):
            err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
            assert err <= 1e-4, f"{framework} {head}: gradients differ from native's by {err:.1e}"


def bench(rounds: int, steps: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(batch, N_X)), jnp.float32)
    y = jnp.asarray(rng.integers(0, CLASSES, batch))
    runs = {}
    for framework, contenders in (("Equinox", equinox_contenders), ("Flax NNX", nnx_contenders)):
        found, first = contenders(X, y, steps)
        check_gradients(first, framework)
        runs.update({(framework, *key): run for key, run in found.items()})
    for run in runs.values():  # compile and warm up
        run(steps)
    load_before = os.getloadavg()[0]
    times = {key: [] for key in runs}
    keys = list(runs)
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(runs[key](steps) / steps)
    load_after = os.getloadavg()[0]
    results = []
    for framework in ("Equinox", "Flax NNX"):
        for timing in ("call", "scan"):
            native = times[framework, "native", timing]
            row = {"framework": framework, "timing": timing}
            for head in HEADS:
                t = times[framework, head, timing]
                row[head] = statistics.median(t)
                ratios = [a / b for a, b in zip(t, native, strict=True)]
                row[f"{head}/native"] = statistics.median(ratios)
                row[f"{head}/native range"] = (min(ratios), max(ratios))
            results.append(row)
    return {
        "rounds": rounds,
        "steps": steps,
        "batch": batch,
        "sizes": [N_X, *SIZES],
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "load_before": load_before,
        "load_after": load_after,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": results,
    }


def markdown(report: dict) -> str:
    lines = [
        f"batch {report['batch']}, features {N_X} tanh, head {'-'.join(map(str, SIZES))} "
        f"relu, {report['rounds']} rounds of {report['steps']} steps, {report['device']}, "
        f"jax {report['jax']}, {report['when']}, load {report['load_before']:.2f} before, "
        f"{report['load_after']:.2f} after",
        "",
        "| framework | step | hand (µs) | jaxnn autodiff (µs) | native autodiff (µs) "
        "| hand / native (range) | jaxnn / native (range) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        spread = {h: "{:.2f}-{:.2f}".format(*row[f"{h}/native range"]) for h in HEADS}
        lines.append(
            f"| {row['framework']} | {row['timing']} | {row['hand'] * 1e6:.0f} "
            f"| {row['jaxnn'] * 1e6:.0f} | {row['native'] * 1e6:.0f} "
            f"| {row['hand/native']:.2f} ({spread['hand']}) "
            f"| {row['jaxnn/native']:.2f} ({spread['jaxnn']}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    report = bench(args.rounds, args.steps, args.batch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
