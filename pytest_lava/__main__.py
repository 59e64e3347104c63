"""Command line: ``python -m pytest_lava <command>`` (also installed as ``pytest-lava``).

    resubmit DIR [--server URL | --only-server URL] [--stream PATH] [--token-file F] [--timeout S]
        send the bundles spooled in DIR (a results directory or its spool/) once the server is
        up; the token comes from --token-file, --token or $LAVA_TOKEN (prefer the file or the
        variable: a command-line argument is visible to other users in `ps`).

        A token goes to one server only: the --server URL, else the one server the bundles were
        spooled for. A spool holding bundles for several servers is resubmitted one server at a
        time with --only-server URL and that server's token (with a token and no --server or
        --only-server, resubmit refuses such a spool and sends nothing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .submit import KINDS, TOKEN_ENV, resolve_token


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
