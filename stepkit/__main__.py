"""``python -m stepkit``: list the step types this environment provides, and the broken plugins.

Exit status 0 when every plugin loaded, 1 when at least one is broken (usable as a build check of a
controller image). ``--json`` prints ``StepRegistry.report()``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import structlog

from stepkit.registry import ENTRY_POINT_GROUP, StepRegistry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepkit", description=__doc__.splitlines()[0])
    parser.add_argument("--group", default=ENTRY_POINT_GROUP, help="entry-point group (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    registry = StepRegistry()
    registry.discover(args.group)
    report = registry.report()
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        width = max((len(name) for name in report["loaded"]), default=0)
        print(f"step types ({len(report['loaded'])}):")
        for name, source in report["loaded"].items():
            print(f"  {name:<{width}}  {source}")
        if report["broken"]:
            print(f"broken plugins ({len(report['broken'])}):")
            for name, reason in report["broken"].items():
                print(f"  {name}: {reason}")
    return 1 if report["broken"] else 0


if __name__ == "__main__":
    # Run as a program: keep stdout for the listing, send the discovery logs to stderr. (Not in main():
    # callers that embed it keep their own logging configuration.)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    sys.exit(main())
