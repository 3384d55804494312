"""``python -m tamesdk.cli``: the ``tamesdk`` command (same as ``tame.cli``)."""

from tame.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
