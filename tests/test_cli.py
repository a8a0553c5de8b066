"""The CLI and the start contract, with real processes (also against the .pyz)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from support import ROOT, ServerProcess, http_request, server_argv

KEY = "ifkey_" + "a1" * 16


def run_cli(*args, env=None, timeout=20):
    e = {k: v for k, v in os.environ.items() if not k.startswith("IRONFLOW_")}
    e.update(env or {})
    return subprocess.run(server_argv() + list(args), cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_version():
    r = run_cli("version")
    assert r.returncode == 0 and "ironflow 0.53.0" in r.stdout


def test_bad_flag_exit_2():
    r = run_cli("serve", "--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr


def test_bad_setting_exit_2(tmp_path):
    r = run_cli("serve", "--db", str(tmp_path / "x.db"), env={"IRONFLOW_LEASE_TTL": "forever"})
    assert r.returncode == 2 and "IRONFLOW_LEASE_TTL" in r.stderr


def test_unreadable_database_exit_4(tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not a database" * 100)
    r = run_cli("serve", "--dev", "--host", "127.0.0.1", "--port", "0", "--db", str(db))
    assert r.returncode == 4 and "unreadable" in r.stderr


def test_port_in_use_exit_3(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = run_cli("serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--db", str(tmp_path / "x.db"))
    finally:
        s.close()
    assert r.returncode == 3 and "already in use" in r.stderr


def test_start_contract_health_within_a_second(tmp_path):
    """`serve --dev --host 127.0.0.1 --port P --db PATH` answers /health quickly."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    e = {k: v for k, v in os.environ.items() if not k.startswith("IRONFLOW_")}
    e.update({"IRONFLOW_LEASE_TTL": "3", "IRONFLOW_LEASE_GRACE": "500ms"})
    t0 = time.monotonic()
    p = subprocess.Popen(server_argv() + ["serve", "--dev", "--host", "127.0.0.1", "--port", str(port),
                                          "--db", str(tmp_path / "c.db")], cwd=ROOT, env=e,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = None
        while time.monotonic() - t0 < 10:
            try:
                status = http_request(port, "GET", "/health", timeout=1)[0]
                break
            except OSError:
                time.sleep(0.02)
        took = time.monotonic() - t0
        assert status == 200
        assert took < 1.0, f"/health answered after {took:.2f}s"
    finally:
        p.terminate()
        assert p.wait(15) == 0


def test_sigterm_is_graceful_and_logs_json(tmp_path):
    srv = ServerProcess(str(tmp_path / "g.db")).start()
    try:
        assert srv.request("GET", "/health")[0] == 200
        assert srv.terminate() == 0
    finally:
        srv.kill()
    logs = srv.logs()
    msgs = [entry["msg"] for entry in logs]
    assert "starting ironflow" in msgs and "listening" in msgs and "stopped" in msgs
    access = [entry for entry in logs if entry.get("logger") == "ironflow.access"]
    assert access and access[0]["status"] == 200 and "ms" in access[0] and access[0]["request_id"]
    start = next(entry for entry in logs if entry["msg"] == "starting ironflow")
    assert start["settings"]["port"] == 0


def test_settings_are_masked_in_the_banner(tmp_path):
    with ServerProcess(str(tmp_path / "m.db"), dev=False,
                       env={"IRONFLOW_BOOTSTRAP_API_KEY": KEY}) as srv:
        pass
    assert all(KEY not in line for line in srv.lines)


def test_first_start_prints_a_key_once(tmp_path):
    db = str(tmp_path / "k.db")
    with ServerProcess(db, dev=False) as srv:
        out = "\n".join(srv.lines)
        keys = [w for w in out.split() if w.startswith("ifkey_") and len(w) == 38]
        assert len(keys) == 1
        key = keys[0]
        assert srv.request("GET", "/api/v1/x")[0] == 401
        assert srv.request("GET", "/api/v1/x", headers={"Authorization": f"Bearer {key}"})[0] == 404
        srv.terminate()
    with ServerProcess(db, dev=False) as srv:  # second start: no new key, old one still works
        assert not any("ifkey_" in line for line in srv.lines)
        assert srv.request("GET", "/api/v1/x", headers={"Authorization": f"Bearer {key}"})[0] == 404


def test_bootstrap_key_file(tmp_path):
    db, kf = str(tmp_path / "f.db"), tmp_path / "keys" / "admin.key"
    with ServerProcess(db, dev=False, args=["--bootstrap-key-file", str(kf)]) as srv:
        key = kf.read_text().strip()
        assert (kf.stat().st_mode & 0o777) == 0o600
        assert not any(key in line for line in srv.lines)
        assert srv.request("GET", "/api/v1/x", headers={"Authorization": f"Bearer {key}"})[0] == 404
        srv.terminate()
    with ServerProcess(db, dev=False, args=["--bootstrap-key-file", str(kf)]) as srv:
        assert kf.read_text().strip() == key  # created once


def test_bootstrap_env_key_persists(tmp_path):
    db = str(tmp_path / "e.db")
    with ServerProcess(db, dev=False, env={"IRONFLOW_BOOTSTRAP_API_KEY": KEY}) as srv:
        assert srv.request("GET", "/api/v1/x", headers={"Authorization": f"Bearer {KEY}"})[0] == 404
        srv.terminate()
    with ServerProcess(db, dev=False, env={"IRONFLOW_BOOTSTRAP_API_KEY": KEY}) as srv:
        assert srv.request("GET", "/api/v1/x", headers={"Authorization": f"Bearer {KEY}"})[0] == 404
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT key_hash FROM api_keys").fetchall()
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert len(rows) == 1 and KEY not in dump  # only the hash is stored


def test_backup_command(tmp_path):
    db = str(tmp_path / "b.db")
    with ServerProcess(db, dev=False, env={"IRONFLOW_BOOTSTRAP_API_KEY": KEY}) as srv:
        dest = str(tmp_path / "copy.db")
        r = run_cli("backup", dest, "--db", db)  # hot: the server is running
        assert r.returncode == 0, r.stderr
        srv.terminate()
    import sqlite3
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
    finally:
        conn.close()
    r = run_cli("backup", dest, "--db", db)
    assert r.returncode == 4 and "exist" in r.stderr


def test_integrity_check_flag(tmp_path):
    with ServerProcess(str(tmp_path / "i.db"), args=["--integrity-check"]) as srv:
        assert srv.request("GET", "/health")[0] == 200


def test_memory_database(tmp_path):
    with ServerProcess(":memory:") as srv:
        assert srv.request("GET", "/ready")[0] == 200
