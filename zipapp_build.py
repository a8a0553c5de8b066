#!/usr/bin/env python3
"""Build ``dist/ironflow.pyz``: one file a user copies onto a box and runs with ``python3``.

Reproducible: the same sources give byte-identical output (sorted entries, fixed timestamps and
permissions, no ``__pycache__``), so a build can be verified by its hash.

Start-up: Python cannot write ``__pycache__`` into a zip, so a ``.pyz`` of bare sources compiles
every module at every start (most of a second here). Next to each ``x.py`` the archive holds
``x.pyc`` compiled by the building interpreter, hash-checked (PEP 552): zipimport uses it only
when its magic number matches the running Python and its recorded hash matches the ``.py``
beside it, and falls back to the source otherwise (another Python version, an edited archive).
The same sources built by the same Python version give the same bytes.

    python3 zipapp_build.py [--output dist/ironflow.pyz]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import marshal
import os
import stat
import sys
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "ironflow_pkg"
SHEBANG = b"#!/usr/bin/env python3\n"
#: zip's epoch; any fixed value makes the archive reproducible.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")

MAIN = b'''import sys
if sys.version_info < (3, 11):
    sys.exit("ironflow needs Python 3.11 or newer")
from ironflow_pkg.cli import main
sys.exit(main())
'''


def package_files(root: str = ROOT) -> list[tuple[str, str]]:
    """(archive name, source path) for every file of the package, sorted by archive name."""
    out = []
    base = os.path.join(root, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in filenames:
            if name.endswith(SKIP_SUFFIXES) or name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            arc = os.path.relpath(path, root).replace(os.sep, "/")
            out.append((arc, path))
    return sorted(out)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.create_system = 3  # unix, whatever the build host
    return info


def hash_pyc(source: bytes, arc: str) -> bytes:
    """A checked-hash ``.pyc`` (PEP 552) of ``source``, reported in tracebacks as ``arc``."""
    code = compile(source, arc, "exec", dont_inherit=True)
    flags = 0b11  # hash-based, check the source
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))


def build(output: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_entry("__main__.py"), MAIN)
        for arc, path in package_files():
            with open(path, "rb") as f:
                data = f.read()
            zf.writestr(_entry(arc), data)
            if arc.endswith(".py"):
                zf.writestr(_entry(arc[:-3] + ".pyc"), hash_pyc(data, arc))
    data = SHEBANG + buf.getvalue()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default=os.path.join(ROOT, "dist", "ironflow.pyz"))
    args = p.parse_args(argv)
    digest = build(args.output)
    print(f"wrote {os.path.relpath(args.output)} sha256={digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
