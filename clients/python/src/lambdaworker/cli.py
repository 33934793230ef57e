"""The ``lambdaworker`` command: create, update, list and delete pool functions.

``list``, ``update`` and ``delete`` act only on functions carrying the pool tag, and refuse
any other with a message and exit status 1. Connection settings come from the options or
the environment, as for :class:`~lambdaworker.Client` (keys only from the environment, so
that no secret shows in the process list).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import deploy
from .client import Client
from .errors import LambdaError


def _memory(text: str) -> int:
    value = int(text)
    if not 128 <= value <= 3008 or value % 64:
        raise argparse.ArgumentTypeError(f"{value}: memory is 128 to 3008 MB, a multiple of 64")
    return value


def _timeout(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 900:
        raise argparse.ArgumentTypeError(f"{value}: the timeout is 1 to 900 seconds")
    return value


def _concurrency(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value}: max concurrency is 1 to 1000")
    return value


def _parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--endpoint",
        help="the worker's URL (default: $LAMBDAWORKER_ENDPOINT, else http://localhost:8080); "
        "keys come from $LAMBDAWORKER_ACCESS_KEY/$LAMBDAWORKER_SECRET_KEY or "
        "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY",
    )

    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument(
        "-r", "--requirements", metavar="FILE", help="a requirements.txt to install with the function"
    )
    settings.add_argument(
        "--memory", type=_memory, metavar="MB", help="memory size, 128 to 3008 in steps of 64"
    )
    settings.add_argument(
        "--timeout", type=_timeout, metavar="S", help="timeout of a call in seconds, 1 to 900"
    )
    settings.add_argument(
        "--layers",
        nargs="+",
        action="extend",
        metavar="ARN",
        help="layer version ARNs (at most 5; put them after the paths)",
    )
    settings.add_argument(
        "--max-concurrency",
        type=_concurrency,
        metavar="N",
        help=f"calls one worker runs at once (create's default: {deploy.DEFAULT_MAX_CONCURRENCY})",
    )

    parser = argparse.ArgumentParser(
        prog="lambdaworker", description="Manage LambdaPool functions of a lambdaworker cluster."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser(
        "create", parents=[connection, settings], help="create a pool function from files and directories"
    )
    create.add_argument("name")
    create.add_argument("paths", nargs="+", metavar="PATH", help="files and directories to deploy")
    update = commands.add_parser(
        "update", parents=[connection, settings], help="update a pool function's code or settings"
    )
    update.add_argument("name")
    update.add_argument("paths", nargs="*", metavar="PATH", help="the new code (left out: keep the code)")
    commands.add_parser("list", parents=[connection], help="list the pool functions")
    delete = commands.add_parser("delete", parents=[connection], help="delete a pool function")
    delete.add_argument("name")
    return parser


def _client(args: argparse.Namespace) -> Client:
    return Client(args.endpoint)


def _create(args: argparse.Namespace) -> None:
    config = deploy.create(
        _client(args),
        args.name,
        args.paths,
        requirements_file=args.requirements,
        memory=args.memory,
        timeout=args.timeout,
        layers=args.layers,
        max_concurrency=args.max_concurrency or deploy.DEFAULT_MAX_CONCURRENCY,
    )
    print(
        f"created pool function {config['FunctionName']}: {config.get('CodeSize')} bytes of code, "
        f"{config.get('MemorySize')} MB, timeout {config.get('Timeout')} s"
    )


def _update(args: argparse.Namespace) -> None:
    if not args.paths and all(
        v is None for v in (args.requirements, args.memory, args.timeout, args.layers, args.max_concurrency)
    ):
        raise deploy.DeployError("nothing to update: give the code's paths or a setting")
    result = deploy.update(
        _client(args),
        args.name,
        args.paths,
        requirements_file=args.requirements,
        memory=args.memory,
        timeout=args.timeout,
        layers=args.layers,
        max_concurrency=args.max_concurrency,
    )
    changes = [
        what for what, changed in (("code", result.code), ("configuration", result.configuration)) if changed
    ]
    print(
        f"updated pool function {args.name}: {' and '.join(changes)}"
        if changes
        else f"pool function {args.name} is up to date"
    )


def _list(args: argparse.Namespace) -> None:
    functions = deploy.list_pool_functions(_client(args))
    rows = [("NAME", "MEMORY", "TIMEOUT", "LAST MODIFIED")]
    rows += [
        (
            f["FunctionName"],
            f"{f.get('MemorySize')} MB",
            f"{f.get('Timeout')} s",
            str(f.get("LastModified", "")),
        )
        for f in functions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _delete(args: argparse.Namespace) -> None:
    deploy.delete(_client(args), args.name)
    print(f"deleted pool function {args.name}")


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; returns its exit status (0, or 1 on an error or a refusal)."""
    args = _parser().parse_args(argv)
    run = {"create": _create, "update": _update, "list": _list, "delete": _delete}[args.command]
    try:
        run(args)
    except LambdaError as exc:
        print(f"lambdaworker {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
