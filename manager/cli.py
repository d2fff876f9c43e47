"""Subcommands ``serve``, ``status``, ``verify-journal``, ``pause``,
``resume``, ``drain`` and ``requeue-failed`` of ``python -m manager``.

``serve`` is the manager on the storage host: it scans, enqueues, watches
the run to its end (journal, state.json, summary), serves the status API and
dashboard, and advertises the bus over mDNS. Its exit status is the run's
(non-zero when any job was dead-lettered; see ``manager.summary``), or a
start-up failure's (``manager.startup``): every check that can fail runs
before anything is created.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bus.cli_options import ENV_DATA_ROOT, ENV_INPUT_ROOT, DefaultsHelpFormatter, add_root_options, roots
from bus.constants import DEFAULT_NAMESPACE
from bus.errors import BusUnavailable, EmbedfleetError
from bus.redis_transport import RedisTransport, connect, set_retries
from bus.settings import ENV_NAMESPACE, ENV_URL, RedisSettings
from manager import actions, startup
from manager.auth import InsecureBind, check_bind, token_from_env
from manager.published import display_url
from manager.redaction import Redactor, install_log_redaction
from manager.scan_cli import add_job_options
from manager.state import Interrupted

log = logging.getLogger("embedfleet.manager")
DEFAULT_PORT = 8377


def _bus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--redis-url",
        default=os.environ.get(ENV_URL),
        help=f"redis://[user:pass@]host:port/db (env {ENV_URL}; password also from EMBEDFLEET_REDIS_PASSWORD)",
    )
    p.add_argument(
        "--namespace",
        default=os.environ.get(ENV_NAMESPACE),
        help=f"key prefix (env {ENV_NAMESPACE}; default: {DEFAULT_NAMESPACE})",
    )


def settings_from_args(args: argparse.Namespace) -> RedisSettings:
    """The bus settings; a missing or bad URL is a ``StartupError`` (exit 2)."""
    return startup.settings_from_url(args.redis_url, args.namespace)


def redact_logs(settings: RedisSettings | None = None, token: str | None = None) -> Redactor:
    """Redact secrets from every log line (filters on the root handlers)."""
    red = Redactor([*(settings.secrets() if settings else []), token or ""])
    install_log_redaction(red)
    return red


def register(sub: Any) -> None:
    """Add this module's subcommands to ``python -m manager``."""
    _register_serve(sub)
    p = sub.add_parser("status", help="the run and the fleet in the terminal", formatter_class=DefaultsHelpFormatter)
    _bus_options(p)
    p.add_argument("--run-dir", type=Path, help="run directory (default: the latest under <output-root>/runs)")
    add_root_options(p, with_input=False, output_help="output root (holds runs/)")
    p.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="SECONDS", help="refresh until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "verify-journal",
        formatter_class=DefaultsHelpFormatter,
        help="check a journal's hash chain and, with --redis-url, its completeness (exit 1: tampered or incomplete)",
    )
    p.add_argument("path", type=Path, help="events.jsonl or its run directory")
    p.add_argument("--json", action="store_true")
    _bus_options(p)
    p.set_defaults(func=cmd_verify)

    for name, helptext in [
        ("pause", "workers take no new job"),
        ("resume", "clear pause and drain"),
        ("drain", "each worker exits after its current job"),
        ("requeue-failed", "put every dead-lettered job back on its lane"),
    ]:
        p = sub.add_parser(name, help=helptext, formatter_class=DefaultsHelpFormatter)
        _bus_options(p)
        p.set_defaults(func=cmd_action, action=name)


def _register_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="scan, enqueue, coordinate the run, serve status and dashboard",
        formatter_class=DefaultsHelpFormatter,
    )
    _bus_options(p)
    add_root_options(
        p,
        input_help="input root (holds chains/); required, by a flag or the environment",
        output_help="output root (holds embeddings/, runs/)",
        output_default="the input root",
    )
    add_job_options(p)
    p.add_argument("--route", action="append", default=[], help="'<subreddit glob>=<lane>' (repeatable)")
    p.add_argument("--route-size", action="append", default=[], help="'<bytes>=<lane>': inputs at least this big")
    p.add_argument("--run-dir", type=Path, help="run directory (default: <output-root>/runs/<run id>)")
    p.add_argument(
        "--host", default="127.0.0.1", help="API bind address (beyond loopback needs EMBEDFLEET_DASHBOARD_TOKEN)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="API and dashboard port")
    p.add_argument("--no-api", action="store_true", help="serve no API or dashboard")
    p.add_argument("--no-advertise", action="store_true", help="do not advertise the bus over mDNS")
    p.add_argument(
        "--cluster-command",
        help="run after embedding, e.g. 'python -m clusterer --data-root "
        "{output_root}' ({output_root}, {run_dir}, {run_id} filled in)",
    )
    p.add_argument(
        "--keep-serving", action="store_true", help="keep the dashboard up after the run ends, until Ctrl-C or SIGTERM"
    )
    p.add_argument(
        "--redis-wait",
        type=float,
        default=startup.DEFAULT_REDIS_WAIT_S,
        metavar="SECONDS",
        help="at start, retry an unreachable Redis this long (backoff 0.25 s doubling to 10 s), then exit 75",
    )
    p.add_argument(
        "--reuse-max-bytes",
        help="byte ceiling of the fleet's reuse store, e.g. 8G (0: none of ours, for a dedicated LRU Redis; "
        "default: leave it as set, else 1G); see docs/reuse.md",
    )
    p.set_defaults(func=cmd_serve)


def input_root_of(args: argparse.Namespace) -> tuple[Path, Path]:
    """The input and output roots of ``serve``: flags, then the environment;
    no input root at all is a usage error."""
    r = roots(args, output_defaults_to_input=True)
    if r.input is None or r.output is None:
        raise startup.StartupError(
            f"no input root: pass --input-root (or --data-root), or set {ENV_INPUT_ROOT} or {ENV_DATA_ROOT}"
        )
    return r.input, r.output


def _cluster_command(template: str, stop: threading.Event) -> Any:
    """The clusterer as a command; a stop (SIGTERM) ends it too (SIGTERM, then
    SIGKILL after 10 s) and interrupts the run."""

    def run(req: Any) -> dict[str, Any]:
        argv = [
            a.format(output_root=req.output_root, run_dir=req.run_dir, run_id=req.run_id) for a in shlex.split(template)
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv)
        while proc.poll() is None:
            if stop.wait(0.2):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise Interrupted()
        rc = proc.returncode
        if rc != 0:
            raise RuntimeError(f"cluster command exited with status {rc}")
        return {"command": argv[0], "exit_code": rc, "seconds": round(time.monotonic() - t0, 1)}

    return run


class BackgroundAdvert:
    """Announces the bus over mDNS from a thread: registering probes the
    network for a second or two, and the run need not wait for it."""

    def __init__(self, settings: RedisSettings, api_url: str | None) -> None:
        self._adv: Any = None
        self._thread = threading.Thread(target=self._start, args=(settings, api_url), daemon=True)
        self._thread.start()

    def _start(self, settings: RedisSettings, api_url: str | None) -> None:
        from bus.discovery import advertise, url_without_password

        if settings.unix_socket:
            log.info("not advertising: Redis is on a unix socket")
            return
        try:
            url = url_without_password(settings)  # never a password over mDNS
            self._adv = advertise(url, settings.port, namespace=settings.namespace, api_url=api_url)
        except (OSError, RuntimeError, ValueError) as e:
            log.warning("mDNS advertisement failed (%s); workers need EMBEDFLEET_REDIS_URL", e)

    def close(self) -> None:
        self._thread.join(15)
        if self._adv is not None:
            self._adv.close()


def set_reuse_ceiling(settings: RedisSettings, size: str) -> str | None:
    """Store the reuse store's ceiling in Redis; an error message or None."""
    from bus.errors import BusUnavailable
    from bus.reuse_redis import RedisReuseStore
    from workers.limits import parse_size

    try:
        max_bytes = 0 if size.strip() == "0" else parse_size(size)
    except ValueError as e:
        return f"--reuse-max-bytes: {e}"
    try:
        RedisReuseStore(connect(settings, timeout_s=5.0), namespace=settings.namespace).set_ceiling(max_bytes)
    except BusUnavailable as e:
        return f"cannot set the reuse ceiling on Redis {settings.redacted()}: {e}"
    log.info("reuse store ceiling: %s bytes", f"{max_bytes:,}" if max_bytes else "none of ours")
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from manager.routing import Routes

    settings = settings_from_args(args)
    token = token_from_env()
    redact_logs(settings, token)
    try:
        if not args.no_api:
            check_bind(args.host, token)
    except InsecureBind as e:
        raise startup.StartupError(str(e)) from None
    input_root, output_root = input_root_of(args)
    startup.check_input_root(input_root)
    startup.check_file(args.subreddits_list, "--subreddits-list")
    startup.wait_for_redis(settings, args.redis_wait)
    if args.reuse_max_bytes is not None:
        error = set_reuse_ceiling(settings, args.reuse_max_bytes)
        if error:
            raise startup.StartupError(error)
    model = args.model
    if model is None:
        from models.source import model_id

        model = model_id()
    co = _coordinator(
        settings,
        output_root=output_root,
        input_root=input_root,
        model=model,
        run_dir=args.run_dir,
        column=args.text_column,
        id_column=args.id_column,
        rows_per_part=args.rows_per_part,
        subreddit_list=args.subreddits_list,
        routes=Routes.parse(args.route, args.route_size),
        secrets=[token or ""],
        resume=True,
    )
    api = None if args.no_api else co.serve_api(args.host, args.port, token)
    adv = None if args.no_advertise else BackgroundAdvert(settings, api.url if api else None)
    terminated = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: _terminate(terminated, co))
    try:
        stop = co.stop_event
        summary = co.run(cluster=_cluster_command(args.cluster_command, stop) if args.cluster_command else None)
        print(summary.render(), flush=True)
        if args.keep_serving and api is not None and not terminated.is_set():
            print(
                f"the dashboard shows the final state on {display_url(api.url)} until this process exits; "
                "Ctrl-C or SIGTERM to stop",
                flush=True,
            )
            wait_for_stop(terminated)
        return summary.exit_code
    finally:
        if adv is not None:
            adv.close()
        if api is not None:
            api.stop()


def _coordinator(settings: RedisSettings, **kw: Any) -> Any:
    """A ``Coordinator``; Redis failing between the wait and here, a run dir
    that cannot be written or that another live manager holds, are start-up errors."""
    from manager.coordinator import Coordinator, RunHeld
    from manager.disk import is_outage

    try:
        return Coordinator(settings, **kw)
    except BusUnavailable as e:
        raise startup.StartupError(
            f"cannot reach Redis at {settings.redacted()} ({e})", startup.EXIT_REDIS_UNREACHABLE
        ) from None
    except RunHeld as e:
        raise startup.StartupError(str(e)) from None
    except OSError as e:  # the run dir cannot be written: full, failing, or not ours
        code = startup.EXIT_REDIS_UNREACHABLE if is_outage(e) else startup.EXIT_USAGE
        raise startup.StartupError(f"cannot write the run directory: {e}", code) from None


def wait_for_stop(stopped: threading.Event) -> None:
    """Block until ``stopped`` is set (SIGTERM) or Ctrl-C."""
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def cmd_status(args: argparse.Namespace) -> int:
    from manager import status_view

    settings = settings_from_args(args) if args.redis_url else None
    redact_logs(settings)
    return status_view.main(settings, args.run_dir, roots(args).output, args.watch, args.json)


def cmd_verify(args: argparse.Namespace) -> int:
    from manager.journal import verify_run

    if not args.path.exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    result = verify_run(args.path)
    complete = None
    if args.redis_url:
        from manager.completeness import check

        run_dir = args.path if args.path.is_dir() else args.path.parent
        settings = settings_from_args(args)
        redact_logs(settings)
        try:
            complete = check(run_dir, settings)
        except BusUnavailable as e:
            raise startup.StartupError(
                f"cannot reach Redis at {settings.redacted()} ({e})", startup.EXIT_REDIS_UNREACHABLE
            ) from None
    if args.json:
        print(json.dumps({**result.to_dict(), "complete": complete.to_dict() if complete else None}, indent=1))
    elif result.ok:
        seq = result.head.seq if result.head else 0
        print(f"OK: {result.path}: {result.lines} lines, chain intact, head seq {seq}")
    else:
        print(f"TAMPERED: {result.path}: {len(result.problems)} problem(s)")
        for problem in result.problems[:50]:
            print(f"  {problem}")
    if complete is not None and not args.json:
        if complete.ok:
            print(f"COMPLETE: {complete.done} jobs done in the run, one completion line each")
        else:
            print(f"INCOMPLETE: {len(complete.problems())} problem(s)")
            for problem in complete.problems()[:50]:
                print(f"  {problem}")
    return 0 if result.ok and (complete is None or complete.ok) else 1


def cmd_action(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    redact_logs(settings)
    client = connect(settings, timeout_s=5.0)
    set_retries(client, 2, base_s=0.1, cap_s=0.5)  # an operator wants an answer now
    ns = settings.namespace
    try:
        if args.action == "requeue-failed":
            res = actions.requeue_failed(client, ns)
            detail = f"{res.requeued} dead-lettered jobs requeued, {res.skipped} left alone"
        else:
            detail = {"pause": actions.pause, "resume": actions.resume, "drain": actions.drain}[args.action](client, ns)
        # The coordinator journals fleet events: leave a trace of who did what.
        RedisTransport(client, namespace=ns).publish_event(
            {
                "v": 1,
                "type": "operator_action",
                "action": args.action,
                "detail": detail,
                "source": "cli",
                "worker": f"cli:{getpass.getuser()}@{socket.gethostname()}",
                "ts_ms": int(time.time() * 1000),
            }
        )
    except BusUnavailable as e:
        raise startup.StartupError(
            f"cannot reach Redis at {settings.redacted()} ({e})", startup.EXIT_REDIS_UNREACHABLE
        ) from None
    except EmbedfleetError as e:
        code = startup.EXIT_ACCESS_DENIED if type(e).__name__ == "BusAccessDenied" else 2
        raise startup.StartupError(f"Redis at {settings.redacted()}: {e}", code) from None
    print(detail)
    return 0


def _terminate(terminated: threading.Event, coordinator: Any) -> None:
    """SIGTERM: stop the run (interrupted) or, once it ended, the serving."""
    terminated.set()
    coordinator.stop()
