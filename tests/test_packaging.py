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
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
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
