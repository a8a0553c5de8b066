#!/usr/bin/env python3
"""Run the whole test suite the way CI does: ``python3 scripts/run_tests.py [pytest args]``.

1. installs pytest (the only test dependency) if it is missing;
2. builds ``dist/ironflow.pyz``;
3. runs the suite against the source tree, then the same suite against the built ``.pyz``
   (``IRONFLOW_TEST_PYZ=1``);
4. prints one closing line ``tests: N passed, M failed`` and exits non-zero on any failure
   (including a run that collected no tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_pytest() -> None:
    try:
        import pytest  # noqa: F401
    except ImportError:
        print("pytest is missing: installing it with pip", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "pytest"])


def run_suite(label: str, extra_env: dict[str, str], args: list[str]) -> tuple[int, int, int, int]:
    """Run pytest; return (exit code, passed, failed+errors, skipped)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml_path = os.path.join(tmp, "junit.xml")
        env = dict(os.environ, **extra_env, PYTHONDONTWRITEBYTECODE="1")
        print(f"\n=== {label} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                f"--junitxml={xml_path}", *args], cwd=ROOT, env=env)
        passed = failed = skipped = 0
        if os.path.exists(xml_path):
            root = ET.parse(xml_path).getroot()
            for suite in root.iter("testsuite"):
                tests = int(suite.get("tests", 0))
                f = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                s = int(suite.get("skipped", 0))
                passed += tests - f - s
                failed += f
                skipped += s
    return code, passed, failed, skipped


def main(argv: list[str]) -> int:
    ensure_pytest()
    subprocess.check_call([sys.executable, os.path.join(ROOT, "zipapp_build.py")], cwd=ROOT)
    args = argv or ["tests"]
    results = [run_suite("source tree", {"IRONFLOW_TEST_PYZ": "0"}, args),
               run_suite("dist/ironflow.pyz", {"IRONFLOW_TEST_PYZ": "1"}, args)]
    passed = sum(r[1] for r in results)
    failed = sum(r[2] for r in results)
    skipped = sum(r[3] for r in results)
    bad = any(code != 0 for code, *_ in results) or passed == 0
    if bad and failed == 0:
        failed = 1  # pytest failed without a countable test (collection error, no tests)
    print(f"\ntests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
