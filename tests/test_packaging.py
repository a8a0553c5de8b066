"""dist/ironflow.pyz is reproducible and self-contained."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile

from support import ROOT

sys.path.insert(0, ROOT)
import zipapp_build  # noqa: E402


def test_build_is_reproducible(tmp_path):
    a, b = str(tmp_path / "a.pyz"), str(tmp_path / "b.pyz")
    zipapp_build.build(a)
    os.utime(os.path.join(ROOT, "ironflow_pkg", "__init__.py"))  # mtimes must not matter
    zipapp_build.build(b)
    da, db = open(a, "rb").read(), open(b, "rb").read()
    assert hashlib.sha256(da).digest() == hashlib.sha256(db).digest()
    assert da.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names[0] == "__main__.py" and names[1:] == sorted(names[1:])
    assert not any("__pycache__" in n for n in names)
    pycs = [n for n in names if n.endswith(".pyc")]
    assert pycs and {n[:-1] for n in pycs} == {n for n in names if n.endswith(".py") and n != "__main__.py"}
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert "ironflow_pkg/server.py" in names and "ironflow_pkg/http11.py" in names


def test_pyz_runs_standalone(tmp_path):
    out = str(tmp_path / "ironflow.pyz")
    zipapp_build.build(out)
    # From another directory, with no access to the source tree on sys.path.
    r = subprocess.run([sys.executable, out, "version"], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=20, env={"PATH": os.environ.get("PATH", "")})
    assert r.returncode == 0 and "0.53.0" in r.stdout
    assert not any(p.name == "__pycache__" for p in tmp_path.iterdir())


def _zip(path: str, entries: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _import_x(zip_path: str) -> str:
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {zip_path!r}); "
                        "import pkg.mod as m; print(m.X, m.__file__.rsplit('.', 1)[1])"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_bytecode_is_used_only_when_it_matches(tmp_path):
    """The .pyc beside each .py makes start-up skip compiling, but never wins over its source:
    a stale hash or another Python's magic number falls back to the .py (zipimport, PEP 552)."""
    src = b"X = 1\n"
    good = zipapp_build.hash_pyc(src, "pkg/mod.py")
    z = str(tmp_path / "fresh.zip")
    _zip(z, {"pkg/__init__.py": b"", "pkg/mod.py": src, "pkg/mod.pyc": good})
    assert _import_x(z) == "1 pyc"
    z = str(tmp_path / "stale.zip")
    _zip(z, {"pkg/__init__.py": b"", "pkg/mod.py": b"X = 2\n", "pkg/mod.pyc": good})
    assert _import_x(z) == "2 py"
    z = str(tmp_path / "other-python.zip")
    other = bytes([good[0] ^ 0x55]) + good[1:]
    _zip(z, {"pkg/__init__.py": b"", "pkg/mod.py": src, "pkg/mod.pyc": other})
    assert _import_x(z) == "1 py"


def test_pyz_bytecode_matches_its_sources(tmp_path):
    out = str(tmp_path / "ironflow.pyz")
    zipapp_build.build(out)
    import importlib.util
    with zipfile.ZipFile(out) as zf:
        for name in zf.namelist():
            if name.endswith(".pyc"):
                data = zf.read(name)
                assert data[:4] == importlib.util.MAGIC_NUMBER and data[4:8] == b"\x03\0\0\0"
                assert data[8:16] == importlib.util.source_hash(zf.read(name[:-1])), name
