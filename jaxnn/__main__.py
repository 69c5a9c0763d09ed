"""``python -m jaxnn``: the ``jaxnn`` command line."""

from jaxnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
