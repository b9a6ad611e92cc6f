"""Command line of kube-testenv.

    python -m kubetestenv build           build (or find cached) binaries; print their directory
    python -m kubetestenv up [--kubeconfig-out PATH]
                                         start the control plane, print the KUBECONFIG path and stay
                                         in the foreground until Ctrl-C or SIGTERM, then stop cleanly

Exit codes: 0 clean stop, 1 start failure (the message holds the command line and log tail),
2 usage error.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from kubetestenv import UNPRIVILEGED_USER, ControlPlane, StartError, build_binaries


def _up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        plane = ControlPlane(apiserver_args=args.apiserver_arg).start()
    except StartError as exc:
        print(f"kube-testenv: {exc}", file=sys.stderr)
        return 1
    try:
        kubeconfig = plane.kubeconfig
        if args.kubeconfig_out:
            out = Path(args.kubeconfig_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plane.kubeconfig, out)
            out.chmod(0o600)
            kubeconfig = out.resolve()
        print(f"kube-testenv: kube-apiserver at {plane.server}", file=sys.stderr)
        print(f"kube-testenv: unprivileged user {UNPRIVILEGED_USER!r}: {plane.kubeconfig_for()}",
              file=sys.stderr)
        print(f"kube-testenv: try  kubectl --kubeconfig {kubeconfig} get ns", file=sys.stderr)
        print("kube-testenv: Ctrl-C stops it", file=sys.stderr)
        print(kubeconfig, flush=True)
        stop.wait()
    finally:
        print("kube-testenv: stopping", file=sys.stderr)
        plane.stop()
        if args.kubeconfig_out:
            Path(args.kubeconfig_out).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubetestenv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or find cached binaries; print their directory")
    up = sub.add_parser("up", help="run the control plane in the foreground until Ctrl-C")
    up.add_argument("--kubeconfig-out", help="also copy the admin kubeconfig here (removed on stop)")
    up.add_argument("--apiserver-arg", action="append", default=[], help="extra kube-apiserver flag")
    args = parser.parse_args(argv)
    if args.command == "build":
        try:
            print(build_binaries())
        except StartError as exc:
            print(f"kube-testenv: {exc}", file=sys.stderr)
            return 1
        return 0
    return _up(args)


if __name__ == "__main__":
    sys.exit(main())
