"""``python -m django_suprsend.testing``: serve the hub emulator until SIGINT or SIGTERM.

Prints ``SuprSend hub emulator listening on <url>`` once it accepts requests,
then ``Profiles page: <url>``: a read-only page of what the hub holds (``--no-page``
turns it off), then the ``SUPRSEND = {...}`` settings that send to it, to paste into a
project's settings. A credential taken from the environment is printed as a reading of the
environment, never as its value.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence

from django_suprsend.testing import page
from django_suprsend.testing.hub import HubEmulator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m django_suprsend.testing",
        description="Run a SuprSend hub emulator on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--workspace-key",
        default=os.environ.get("SUPRSEND_WORKSPACE_KEY", "ws_test_key"),
        help="default: $SUPRSEND_WORKSPACE_KEY or ws_test_key",
    )
    parser.add_argument(
        "--workspace-secret",
        default=os.environ.get("SUPRSEND_WORKSPACE_SECRET", "ws_test_secret"),
        help="default: $SUPRSEND_WORKSPACE_SECRET or ws_test_secret",
    )
    parser.add_argument("--api-key", help="also accept 'Authorization: Bearer <api key>'")
    parser.add_argument("--workspace-uid", help="the env of records sent with the API key")
    parser.add_argument("--path-prefix", default="", help="serve under this path")
    parser.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    parser.add_argument(
        "--max-clock-skew",
        type=float,
        metavar="SECONDS",
        help="answer 401 to a signed request whose Date is further than this from this clock",
    )
    parser.add_argument(
        "--no-page",
        action="store_true",
        help="do not serve the read-only profiles page at / (and _emulator/state.json)",
    )
    return parser.parse_args(argv)


def build_hub(args: argparse.Namespace) -> HubEmulator:
    """The emulator the command serves; pages for people are attached here."""
    return HubEmulator(
        args.workspace_key,
        args.workspace_secret,
        api_key=args.api_key,
        workspace_uid=args.workspace_uid,
        host=args.host,
        port=args.port,
        check_auth=not args.no_auth,
        path_prefix=args.path_prefix,
        serve_page=not args.no_page,  # run by hand: people look at it
        keep_bodies=page.REQUEST_LIMIT,  # nothing but the page can read them
        max_clock_skew=args.max_clock_skew,
    )


def settings_to_paste(args: argparse.Namespace, url: str) -> str:
    """The ``SUPRSEND`` setting of a project that sends to this emulator, as Python source."""
    credentials = (
        {"WORKSPACE_KEY": args.workspace_uid or args.workspace_key, "API_KEY": args.api_key}
        if args.api_key
        else {"WORKSPACE_KEY": args.workspace_key, "WORKSPACE_SECRET": args.workspace_secret}
    )
    # JSON strings are Python string literals, double-quoted as a settings file has them.
    lines = ["SUPRSEND = {"]
    for key, value in [*credentials.items(), ("BASE_URL", url)]:
        variable = f"SUPRSEND_{key}"
        if key != "BASE_URL" and os.environ.get(variable) == value:  # a secret stays there
            lines.append(f"    {json.dumps(key)}: os.environ[{json.dumps(variable)}],")
        else:
            lines.append(f"    {json.dumps(key)}: {json.dumps(value)},")
    if args.no_auth:
        lines[0] += "  # --no-auth: any credentials are accepted"
    return "\n".join([*lines, "}"])


def tune_gc() -> None:
    """Collect less often: this process holds little but long-lived profiles.

    A 400-record request allocates tens of thousands of short-lived objects;
    with the default thresholds each few requests would set off a full
    collection that walks the whole store again.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    hub = build_hub(args)
    tune_gc()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with hub:
        # this line first and unchanged: scripts wait for it
        print(f"SuprSend hub emulator listening on {hub.url}", flush=True)
        if hub.serve_page:
            print(f"Profiles page: {hub.url}", flush=True)
        print("To send to it, put in your project's settings:", flush=True)
        print(settings_to_paste(args, hub.url), flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
