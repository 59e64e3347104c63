"""Command line: ``python -m pytest_lava <command>`` (also installed as ``pytest-lava``).

    resubmit DIR [--server URL] [--stream PATH] [--token-file F] [--timeout S]
        send the bundles spooled in DIR (a results directory or its spool/) once the server is
        up; the token comes from --token-file, --token or $LAVA_TOKEN (prefer the file or the
        variable: a command-line argument is visible to other users in `ps`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .submit import KINDS, TOKEN_ENV, resolve_token


def _resubmit(args: argparse.Namespace) -> int:
    from .secrets import Masker
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
    results = spool.resubmit(
        Path(args.dir), server=args.server, stream=args.stream, token=token, kind=args.kind,
        timeout=args.timeout, retries=args.retries, log=lambda text: print(masker.mask(text)),
    )
    failed = [(e, o) for e, o in results if not (o.ok or o.status == "duplicate")]
    for entry, outcome in failed:
        print(masker.mask(f"still spooled: {entry.path} ({outcome.message})"), file=sys.stderr)
    print(f"{len(results) - len(failed)} delivered, {len(failed)} still in {spool_dir}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_lava", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("resubmit", help="send spooled bundles")
    p.add_argument("dir", help="a results directory or its spool/")
    p.add_argument("--server", help="send to this server instead of each bundle's own")
    p.add_argument("--stream", help="the stream (XML-RPC) to use instead of each bundle's own")
    p.add_argument("--kind", choices=KINDS, help="the sink kind, if the URL scheme does not say it")
    p.add_argument("--token", help=f"the token (better: --token-file or ${TOKEN_ENV})")
    p.add_argument("--token-file", help="a file holding the token")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per bundle, retries included")
    p.add_argument("--retries", type=int, default=3)
    p.set_defaults(func=_resubmit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
