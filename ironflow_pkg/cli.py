"""Command line: ``serve`` (default), ``version``, ``backup PATH``.

Exit codes a script can act on: 0 ok, 1 unexpected failure, 2 bad flag or setting,
3 cannot listen (port in use, address not available), 4 database unreadable.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import signal
import sys
from typing import Any

from .config import VERSION, ConfigError, load_settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_LISTEN, EXIT_DATABASE = 0, 1, 2, 3, 4

log = logging.getLogger("ironflow.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ironflow", description="Ironflow server (event-driven "
                                "durable functions), one process, one port, one sqlite journal.")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the server (the default command)")
    s.add_argument("--host", help="listen address (IRONFLOW_HOST, default 0.0.0.0)")
    s.add_argument("--port", type=int, help="listen port, 0 = any free port (IRONFLOW_PORT, default 9123)")
    s.add_argument("--data-dir", dest="data_dir", help="data directory (IRONFLOW_DATA_DIR, default ./ironflow-data)")
    s.add_argument("--db", dest="db_path", help="sqlite file (IRONFLOW_DB_PATH, default <data dir>/ironflow.db)")
    s.add_argument("--dev", action="store_const", const=True, help="disable authentication (IRONFLOW_DEV)")
    s.add_argument("--bootstrap-key-file", dest="bootstrap_key_file",
                   help="create an admin API key once and write it to this file (mode 0600)")
    s.add_argument("--log-level", dest="log_level", help="trace|debug|info|warn|error (LOG_LEVEL)")
    s.add_argument("--node-id", dest="node_id", help="node id (IRONFLOW_NODE_ID)")
    s.add_argument("--integrity-check", dest="integrity_check", action="store_const", const=True,
                   help="run PRAGMA integrity_check on the database before serving")
    sub.add_parser("version", help="print the version")
    b = sub.add_parser("backup", help="hot-copy the database to PATH (safe while the server runs)")
    b.add_argument("dest", metavar="PATH")
    b.add_argument("--data-dir", dest="data_dir")
    b.add_argument("--db", dest="db_path")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")
    args = _parser().parse_args(argv)  # exits 2 with a usage message on a bad flag
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "dest")}
    if args.command == "version":
        print(f"ironflow {VERSION} (python {sys.version.split()[0]})")
        return EXIT_OK
    try:
        settings = load_settings(flags)
    except ConfigError as e:
        print(f"ironflow: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "backup":
        return _backup(settings.db_path, args.dest)
    return serve(settings)


def _backup(src: str, dest: str) -> int:
    from .journal import JournalError, backup_database
    if not os.path.exists(src):
        print(f"ironflow: database not found: {src}", file=sys.stderr)
        return EXIT_DATABASE
    try:
        backup_database(src, dest, progress=lambda done, total: print(
            f"backup: {done}/{total} pages", file=sys.stderr))
    except JournalError as e:
        print(f"ironflow: backup failed: {e}", file=sys.stderr)
        return EXIT_DATABASE
    print(f"backup written to {dest}")
    return EXIT_OK


def serve(settings: Any) -> int:
    from .wiring import build_app
    from .journal import JournalError
    from .logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    log.info("starting ironflow", extra={"fields": {"version": VERSION, "settings": settings.describe()}})
    app = build_app(settings)
    try:
        app.open()
    except JournalError as e:
        log.error("cannot open the database", extra={"fields": {"error": str(e)}})
        print(f"ironflow: {e}", file=sys.stderr)
        return EXIT_DATABASE
    if app.new_bootstrap_key:
        # Shown exactly once: only the hash is stored (spec README §3.1).
        print("\n  An admin API key was created for this server. It is shown only once:\n\n"
              f"    {app.new_bootstrap_key}\n\n  Use it as 'Authorization: Bearer <key>'.\n",
              file=sys.stderr, flush=True)
    try:
        return asyncio.run(_run(app))
    except KeyboardInterrupt:  # pragma: no cover - signal handlers normally catch it
        return EXIT_OK


async def _run(app: Any) -> int:
    loop = asyncio.get_running_loop()
    try:
        host, port = await app.start()
    except OSError as e:
        await asyncio.to_thread(app.journal.close)
        s = app.settings
        if e.errno == errno.EADDRINUSE:
            msg = f"port {s.port} on {s.host} is already in use; pick another with --port or IRONFLOW_PORT"
        else:
            msg = f"cannot listen on {s.host}:{s.port}: {e.strerror or e}"
        log.error("cannot listen", extra={"fields": {"error": msg}})
        print(f"ironflow: {msg}", file=sys.stderr)
        return EXIT_LISTEN
    log.info("listening", extra={"fields": {"url": f"http://{host}:{port}", "host": host, "port": port,
                                            "dev": app.settings.dev, "db": app.settings.db_path}})
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(130)
        log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    await app.stop()
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
