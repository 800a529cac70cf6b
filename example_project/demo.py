"""``python -m example_project.demo`` (``make demo``): the whole product on one machine.

Migrates the SQLite database in ``.demo/``, creates an admin login, seeds a
few hundred users (some with values SuprSend refuses), then starts together:

- the SuprSend hub emulator, with its page of the profiles it holds;
- a Celery worker and Celery beat, on kombu's ``filesystem://`` broker;
- Django's development server;

pushes every user to the hub with ``manage.py suprsend_backfill``, and
prints where to look. A user edited in the admin reaches the emulator's page
within seconds, through the outbox and the worker. Ctrl-C stops everything.

With ``SUPRSEND_BASE_URL`` and real credentials in the environment no
emulator is started and the same project talks to that hub; with
``CELERY_BROKER_URL`` it uses that broker (see ``example_project/.env.example``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_WORKSPACE = ("ws_demo_key", "ws_demo_secret")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m example_project.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="Django's port (default 8000)")
    parser.add_argument(
        "--hub-port", type=int, default=8765, help="the hub emulator's port (default 8765)"
    )
    parser.add_argument("--users", type=int, default=300, help="demo users on the first run")
    parser.add_argument(
        "--admin-password",
        default=os.environ.get("DEMO_ADMIN_PASSWORD", "suprsend-demo"),
        help="the password of the 'admin' login (default: $DEMO_ADMIN_PASSWORD or suprsend-demo)",
    )
    return parser.parse_args(argv)


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


@dataclass
class Child:
    """A process the demo started, with the log file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Demo:
    demo_dir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Child:
        log = self.demo_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            # Its own session: Ctrl-C reaches the demo alone, which stops each child in turn.
            process = subprocess.Popen(  # noqa: S603 - our own argv
                argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def wait_until(self, child: Child, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until it holds; fail with the child's log if it exits or times out."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if child.process.poll() is not None:
                raise DemoError(
                    f"{child.name} exited ({child.process.returncode}):\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{child.name} did not {what} in {READY_TIMEOUT:.0f}s:\n{child.tail()}"
                )
            time.sleep(0.1)

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def accepts(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    return check


def log_says(child_log: Path, text: str) -> Callable[[], bool]:
    return lambda: child_log.exists() and text in child_log.read_text(errors="replace")


def check_ports(args: argparse.Namespace, with_emulator: bool) -> None:
    wanted = [(args.port, "--port")] + ([(args.hub_port, "--hub-port")] if with_emulator else [])
    for port, option in wanted:
        if not port_is_free(port):
            raise DemoError(f"port {port} on 127.0.0.1 is in use; choose another with {option}")


def demo_environment(args: argparse.Namespace) -> tuple[dict[str, str], bool]:
    """The environment of the demo and its children, and whether it runs the emulator."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with_emulator = "SUPRSEND_BASE_URL" not in env
    if with_emulator:
        env["SUPRSEND_BASE_URL"] = f"http://127.0.0.1:{args.hub_port}/"
        env["SUPRSEND_WORKSPACE_KEY"], env["SUPRSEND_WORKSPACE_SECRET"] = DEMO_WORKSPACE
    return env, with_emulator


def prepare_database(args: argparse.Namespace) -> None:
    """Migrate, (re)set the admin login and seed users, in this process."""
    import django
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    user_model = get_user_model()
    admin, _ = user_model.objects.get_or_create(
        username="admin", defaults={"email": "admin@example.com", "first_name": "Demo"}
    )
    admin.is_staff = admin.is_superuser = True
    admin.set_password(args.admin_password)
    admin.save()
    call_command("seed_demo_users", users=args.users)
    connections.close_all()  # the server and the worker write to the same file


def backfill() -> int:
    """Push every user to the hub (a new emulator holds nothing); the exit status."""
    from django.core.management import call_command
    from django.db import connections

    try:
        call_command("suprsend_backfill", "--restart")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        connections.close_all()
    return 0


def start_services(demo: Demo, args: argparse.Namespace, with_emulator: bool) -> None:
    python = sys.executable
    if with_emulator:
        hub = demo.start("hub-emulator", [
            python, "-m", "django_suprsend.testing", "--port", str(args.hub_port),
            "--workspace-key", DEMO_WORKSPACE[0], "--workspace-secret", DEMO_WORKSPACE[1],
        ])  # fmt: skip
        demo.wait_until(hub, log_says(hub.log, "listening on"), "listen")
    celery = [python, "-m", "celery", "-A", "example_project.celery_app"]
    worker = demo.start("celery-worker", [
        *celery, "worker", "--loglevel", "INFO", "--concurrency", "2",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])  # fmt: skip
    demo.start("celery-beat", [*celery, "beat", "--loglevel", "INFO"])
    server = demo.start("django", [
        python, "example_project/manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload",
    ])  # fmt: skip
    demo.wait_until(worker, log_says(worker.log, " ready."), "get ready")
    demo.wait_until(server, accepts(args.port), "accept connections")


def banner(demo: Demo, args: argparse.Namespace, with_emulator: bool, base_url: str) -> str:
    lines = [
        "",
        "The demo is running. Ctrl-C stops everything.",
        f"  Django admin:   http://127.0.0.1:{args.port}/admin/",
        f"  login:          admin / {args.admin_password}",
        f"  SyncState list: http://127.0.0.1:{args.port}/admin/django_suprsend/syncstate/",
    ]
    if with_emulator:
        lines.append(f"  hub emulator:   {base_url}  (the profiles it holds; refreshes itself)")
    else:
        lines.append(f"  SuprSend hub:   {base_url}")
    lines.append(f"  logs:           {demo.demo_dir / 'logs'}/")
    lines.append("Edit a user in the admin: the change reaches the hub within seconds.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    env, with_emulator = demo_environment(args)
    os.environ.update(env)
    from django.conf import settings

    demo = Demo(Path(settings.DEMO_DIR), env)
    check_ports(args, with_emulator)
    print(f"Preparing the database in {settings.DATABASES['default']['NAME']} ...", flush=True)
    prepare_database(args)
    try:
        start_services(demo, args, with_emulator)
        print("Pushing every user to the hub (manage.py suprsend_backfill) ...", flush=True)
        status = backfill()
        if status == 1:
            print("Some profiles hold values SuprSend refuses: the admin lists them as failed.")
        print(banner(demo, args, with_emulator, env["SUPRSEND_BASE_URL"]), flush=True)
        while (gone := demo.exited()) is None:
            time.sleep(0.5)
        raise DemoError(f"{gone.name} exited ({gone.process.returncode}):\n{gone.tail()}")
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        demo.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C stops the demo also when its shell started it in the background (`make demo &`),
    # which leaves SIGINT ignored; SIGTERM (a test, a supervisor, kill) stops it the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run(args)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
