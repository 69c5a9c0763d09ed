"""``jaxnn bench``: the benchmark (``jaxnn.bench``) on the command line."""


def add(subparsers) -> None:
    from jaxnn import bench

    p = subparsers.add_parser(
        "bench",
        help="time the hand-derived step beside jax.grad, PyTorch, NumPy and the matmul limit",
        description=bench.__doc__.splitlines()[0],
    )
    bench.parser(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from jaxnn import bench

    print(bench.run_from_args(args), end="")
    return 0
