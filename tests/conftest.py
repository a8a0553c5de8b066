"""Test set-up shared by every test module.

``IRONFLOW_TEST_PYZ=1`` runs the same suite against the built ``dist/ironflow.pyz``: the package
is imported from inside the archive and server subprocesses are started from it.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYZ = os.path.join(ROOT, "dist", "ironflow.pyz")

if os.environ.get("IRONFLOW_TEST_PYZ") == "1":
    if not os.path.exists(PYZ):
        raise SystemExit("IRONFLOW_TEST_PYZ=1 but dist/ironflow.pyz is missing: run python3 zipapp_build.py")
    sys.path.insert(0, PYZ)
elif ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import ironflow_pkg  # noqa: E402

if os.environ.get("IRONFLOW_TEST_PYZ") == "1":
    assert ironflow_pkg.__file__ and PYZ in ironflow_pkg.__file__, ironflow_pkg.__file__
