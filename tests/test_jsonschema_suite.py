"""The official JSON-Schema-Test-Suite, Draft 2020-12, against ironflow_pkg.jsonschema.

The suite is read in place from ``../shared/testdata/json-schema-test-suite/`` (relative to the
repository root; never copied into the repository). Remote references ``http://localhost:1234/<p>``
are served from memory out of its ``remotes/<p>`` files.

- Every case of ``tests/draft2020-12/*.json`` is one parametrized test and must pass.
- The ``optional/`` files are reported, not required: ``test_optional_report`` prints a pass count
  per file. ``format`` is an annotation in this implementation, so most ``optional/format/`` cases
  that expect an assertion are expected to fail there.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from ironflow_pkg.jsonschema import SchemaError, compile_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.normpath(os.path.join(ROOT, "..", "shared", "testdata", "json-schema-test-suite"))
DRAFT_DIR = os.path.join(SUITE, "tests", "draft2020-12")
OPTIONAL_DIR = os.path.join(DRAFT_DIR, "optional")
REMOTES_DIR = os.path.join(SUITE, "remotes")
SKIP_REASON = f"JSON-Schema-Test-Suite not found at {SUITE}"

_registry: dict[str, Any] | None = None


def registry() -> dict[str, Any]:
    """Every file under remotes/ keyed by the URI the suite serves it at."""
    global _registry
    if _registry is None:
        reg: dict[str, Any] = {}
        for dirpath, _dirs, files in os.walk(REMOTES_DIR):
            for name in files:
                if name.endswith(".json"):
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, REMOTES_DIR).replace(os.sep, "/")
                    with open(full, encoding="utf-8") as f:
                        reg[f"http://localhost:1234/{rel}"] = json.load(f)
        _registry = reg
    return _registry


def _load_cases(directory: str, recursive: bool) -> list[tuple[str, str, str, Any, Any, bool]]:
    cases = []
    if not os.path.isdir(directory):
        return cases
    for dirpath, _dirs, files in sorted(os.walk(directory)):
        if not recursive and dirpath != directory:
            continue
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), DRAFT_DIR).replace(os.sep, "/")
            with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                groups = json.load(f)
            for g in groups:
                for t in g["tests"]:
                    cases.append((rel, g["description"], t["description"], g["schema"], t["data"],
                                  t["valid"]))
    return cases


REQUIRED = _load_cases(DRAFT_DIR, recursive=False)
OPTIONAL = _load_cases(OPTIONAL_DIR, recursive=True)

_compiled: dict[int, Any] = {}


def _compile(schema: Any) -> Any:
    key = id(schema)  # the case lists keep every schema object alive
    if key not in _compiled:
        _compiled[key] = compile_schema(schema, registry=registry())
    return _compiled[key]


def run_case(schema: Any, data: Any, valid: bool) -> tuple[bool, str]:
    try:
        compiled = _compile(schema)
    except SchemaError as exc:
        return False, f"does not compile: {exc}"
    got = compiled.is_valid(data)
    errors = compiled.validate(data)
    if got != (not errors):
        return False, f"is_valid={got} disagrees with validate()={errors!r}"
    if got != valid:
        return False, f"expected valid={valid}, got {got}; errors={errors!r}"
    return True, ""


@pytest.mark.skipif(not os.path.isdir(DRAFT_DIR), reason=SKIP_REASON)
@pytest.mark.parametrize("rel,group,desc,schema,data,valid",
                         REQUIRED or [pytest.param(*([None] * 6), marks=pytest.mark.skip(SKIP_REASON))],
                         ids=[f"{c[0]}::{c[1]}::{c[2]}" for c in REQUIRED] or ["absent"])
def test_required(rel: str, group: str, desc: str, schema: Any, data: Any, valid: bool) -> None:
    ok, why = run_case(schema, data, valid)
    assert ok, f"{rel} / {group} / {desc}: {why}"


@pytest.mark.skipif(not os.path.isdir(DRAFT_DIR), reason=SKIP_REASON)
def test_required_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Whole-directory summary: how many required cases pass (all of them is the goal)."""
    start = time.perf_counter()
    passed = sum(run_case(c[3], c[4], c[5])[0] for c in REQUIRED)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[json-schema-test-suite] draft2020-12 required: {passed}/{len(REQUIRED)} passed "
              f"({elapsed:.2f}s)")
    assert len(REQUIRED) > 1000
    assert passed == len(REQUIRED)


@pytest.mark.skipif(not os.path.isdir(OPTIONAL_DIR), reason=SKIP_REASON)
def test_optional_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Optional files: reported per file, never required."""
    per_file: dict[str, list[int]] = {}
    failures: list[str] = []
    for rel, group, desc, schema, data, valid in OPTIONAL:
        ok, why = run_case(schema, data, valid)
        counts = per_file.setdefault(rel, [0, 0])
        counts[0] += ok
        counts[1] += 1
        if not ok and "/format/" not in rel:
            failures.append(f"{rel} / {group} / {desc}: {why[:160]}")
    total = sum(c[0] for c in per_file.values()), sum(c[1] for c in per_file.values())
    with capsys.disabled():
        print(f"\n[json-schema-test-suite] draft2020-12 optional: {total[0]}/{total[1]} passed")
        for rel, (ok, n) in sorted(per_file.items()):
            print(f"  {rel}: {ok}/{n}")
        for line in failures:
            print(f"  FAIL {line}")
