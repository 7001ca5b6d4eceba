"""Options several commands share: another server to work on instead of the local store (`--http-url`, `--api-key`)."""

from __future__ import annotations

import argparse
import sys


def add_server_options(p: argparse.ArgumentParser, url_help: str) -> None:
    p.add_argument("--http-url", metavar="URL", help=url_help)
    p.add_argument("--api-key", metavar="KEY", help="the access key for --http-url (sent as x-api-key)")


def refuse_bad_url(command: str, args: argparse.Namespace) -> bool:
    """Whether `--http-url` was given but is no http(s) URL; if so, says so on stderr (the command exits 2)."""
    if args.http_url and not args.http_url.startswith(("http://", "https://")):
        sys.stderr.write(f"agentation-mcp {command}: --http-url must be an http:// or https:// URL.\n")
        return True
    return False
