"""``python -m controller`` and the ``workflow-controller`` console script."""

from __future__ import annotations

import sys

from controller import cli


def main() -> int:
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
