"""Command line: ``python -m pytest_lava <command>`` (also installed as ``pytest-lava``).

    resubmit DIR [--server URL | --only-server URL] [--stream PATH] [--token-file F] [--timeout S]
        send the bundles spooled in DIR (a results directory or its spool/) once the server is
        up; the token comes from --token-file, --token or $LAVA_TOKEN (prefer the file or the
        variable: a command-line argument is visible to other users in `ps`).

        A token goes to one server only: the --server URL, else the one server the bundles were
        spooled for. A spool holding bundles for several servers is resubmitted one server at a
        time with --only-server URL and that server's token (with a token and no --server or
        --only-server, resubmit refuses such a spool and sends nothing).

    pool status [--lava-pool URL] [--devices DIR] [--state DIR] [--json]
        who holds which board, and which are quarantined: the local pool of a device directory,
        or the PostgreSQL pool (--lava-pool or $PYTEST_LAVA_POOL; without --devices, every
        board the database knows).

    pool release BOARD [--lava-pool URL] [--devices DIR] [--state DIR]
        lift a board's quarantine by hand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .submit import KINDS, TOKEN_ENV, resolve_token

if TYPE_CHECKING:
    from .devices.leasing import PoolBackend


def _resubmit(args: argparse.Namespace) -> int:
    from .core.secrets import Masker
    from .submit import spool

    option_token = args.token
    if args.token_file:
        option_token = Path(args.token_file).read_text(encoding="utf-8").strip()
    token = resolve_token(None, option_token)
    masker = Masker([token])
    spool_dir = spool.find_spool(Path(args.dir))
    if not spool.entries(spool_dir):
        print(f"nothing to resubmit in {spool_dir}")
        return 0
    try:
        results = spool.resubmit(
            Path(args.dir), server=args.server, stream=args.stream, token=token, kind=args.kind,
            only_server=args.only_server, timeout=args.timeout, retries=args.retries,
            log=lambda text: print(masker.mask(text)),
        )
    except spool.TokenScopeError as exc:
        print(masker.mask(f"resubmit: {exc}"), file=sys.stderr)
        return 2
    failed = [(e, o) for e, o in results if not (o.ok or o.status == "duplicate")]
    for entry, outcome in failed:
        print(masker.mask(f"still spooled: {entry.path} ({outcome.message})"), file=sys.stderr)
    print(f"{len(results) - len(failed)} delivered, {len(failed)} still in {spool_dir}")
    return 1 if failed else 0


def _open_pool(args: argparse.Namespace) -> tuple[PoolBackend | None, list[str]]:
    """The pool the arguments name, or (None, problems)."""
    import os

    from .core.errors import InputError
    from .devices.directory import load_devices
    from .devices.pools import POOL_ENV, open_pool, pool_problem
    from .plugin.session import default_state_dir

    spec = (args.lava_pool or os.environ.get(POOL_ENV) or "").strip()
    problem = pool_problem(spec)
    if problem:
        return None, [f"--lava-pool: {problem}"]
    devices_dir = Path(args.devices or "devices")
    devices = {}
    if args.devices or spec in ("", "local"):
        try:
            devices = load_devices(devices_dir).devices
        except InputError as exc:
            return None, [str(p) for p in exc.problems]
    state = Path(args.state) if args.state else default_state_dir(devices_dir)
    return open_pool(devices, spec, state), []


def _pool(args: argparse.Namespace) -> int:
    import json

    from .core.errors import LavaError
    from .devices.pgpool import PostgresPool
    from .devices.pools import status_table

    pool, problems = _open_pool(args)
    if args.action == "release" and not args.board:
        problems, pool = ["release: which board? (pool release BOARD)"], None
    if pool is None:
        for problem in problems:
            print(f"pool: {problem}", file=sys.stderr)
        return 2
    try:
        if not pool.devices and isinstance(pool, PostgresPool):  # every board the database knows
            pool.devices = {d.name: d for d in pool.known_boards()}
        if args.action == "release":
            message = pool.health.release(args.board)
            print(message or f"board {args.board} is not quarantined")
        elif args.json:
            print(json.dumps({"pool": pool.location, "boards": pool.status(),
                              "health": pool.health.status()}, indent=1))
        else:
            print("\n".join(status_table(pool)))
    except LavaError as exc:
        print(f"pool: {exc}", file=sys.stderr)
        return 1
    finally:
        pool.close()
    return 0


_RESUBMIT_HELP = (
    "Send the bundles spooled in DIR. A token (--token-file, --token or $LAVA_TOKEN) goes to one "
    "server only: the --server URL when given, else the one server the bundles were spooled for. "
    "A spool holding bundles for several servers is refused when a token is given: resubmit it one "
    "server at a time with --only-server URL and that server's token."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_lava", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("resubmit", help="send spooled bundles", description=_RESUBMIT_HELP)
    p.add_argument("dir", help="a results directory or its spool/")
    p.add_argument("--server", help="send to this server instead of each bundle's own (the token goes to it)")
    p.add_argument("--only-server", metavar="URL",
                   help="send only the bundles spooled for this server (same scheme, host and port)")
    p.add_argument("--stream", help="the stream (XML-RPC) to use instead of each bundle's own")
    p.add_argument("--kind", choices=KINDS, help="the sink kind, if the URL scheme does not say it")
    p.add_argument("--token", help=f"the token of the one server it goes to (better: --token-file or ${TOKEN_ENV})")
    p.add_argument("--token-file", help="a file holding the token")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per bundle, retries included")
    p.add_argument("--retries", type=int, default=3)
    p.set_defaults(func=_resubmit)
    p = sub.add_parser("pool", help="the board pool: who holds what, quarantine")
    p.add_argument("action", choices=["status", "release"])
    p.add_argument("board", nargs="?", help="the board to release from quarantine (release)")
    p.add_argument("--lava-pool", metavar="URL", help="'local' (default) or postgresql://… (or $PYTEST_LAVA_POOL)")
    p.add_argument("--devices", metavar="DIR", help="device directory (default: ./devices)")
    p.add_argument("--state", metavar="DIR", help="state directory of the local pool (default: as pytest's)")
    p.add_argument("--json", action="store_true", help="machine-readable status")
    p.set_defaults(func=_pool)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
