"""The proto schema layer: generated .proto files, the parser/linker, and load_schema().

The table-driven part checks every E/M/f/S row of ``../shared/spec/proto-fields.txt`` against the
loaded :class:`Schema` (skipped with a reason when the spec is not checked out next to the repo).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from support import ROOT

from ironflow_pkg.proto import descriptors, parser
from ironflow_pkg.proto.descriptors import SchemaError, load_schema

SPEC = os.path.normpath(os.path.join(ROOT, "..", "shared", "spec", "proto-fields.txt"))
HAVE_SPEC = os.path.exists(SPEC)
NO_SPEC = f"spec file not found: {SPEC} (../shared/spec is not checked out next to the repo)"
PKG = "ironflow.v1"


def _rows() -> list[list[str]]:
    if not HAVE_SPEC:
        return []
    with open(SPEC, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f
                if line.strip() and not line.startswith("#")]


ROWS = _rows()


def _qualify(type_name: str) -> str:
    return type_name if "." in type_name else f"{PKG}.{type_name}"


def _params(kind: str):
    rows = [r for r in ROWS if r[0] == kind]
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_SPEC))]
    ids = {
        "E": lambda r: f"{r[1]}.{r[2]}",
        "M": lambda r: r[1],
        "f": lambda r: f"{r[1]}.{r[2]}",
        "S": lambda r: f"{r[1]}.{r[2]}",
    }[kind]
    return [pytest.param(r, id=ids(r)) for r in rows]


@pytest.fixture(scope="module")
def schema():
    return load_schema()


# --- table-driven: every spec row ---------------------------------------------------------------


@pytest.mark.parametrize("row", _params("M"))
def test_spec_message(schema, row):
    md = schema.message(_qualify(row[1]))
    spec_fields = [r[2] for r in ROWS if r[0] == "f" and r[1] == row[1]]
    assert [f.name for f in md.fields] == spec_fields, "fields and their order must match the spec"
    assert not md.map_entry


@pytest.mark.parametrize("row", _params("f"))
def test_spec_field(schema, row):
    _, msg, name, number, ftype, label, json_name, notes = row
    md = schema.message(_qualify(msg))
    f = md.by_name[name]
    assert f.number == int(number)
    assert md.by_number[f.number] is f
    assert f.json_name == json_name and md.by_json_name[json_name] is f
    oneof = None
    for note in notes.split():
        if note.startswith("oneof="):
            oneof = note[len("oneof="):]
    assert f.oneof == oneof
    if oneof:
        assert name in md.oneofs[oneof]
    if label == "map":
        m = re.fullmatch(r"map<(\w+),([\w.]+)>", ftype)
        assert m, ftype
        key, value = m.groups()
        assert f.is_map and f.label == "repeated" and f.type == "message"
        assert f.map_key_type == key
        assert f.map_value_type == (value if value in descriptors.SCALAR_TYPES else _qualify(value))
        entry = schema.message(f.type_name)
        assert entry.map_entry
        assert [(e.name, e.number) for e in entry.fields] == [("key", 1), ("value", 2)]
        assert entry.by_number[1].type == key
        return
    assert not f.is_map
    assert f.label == label
    if ftype in descriptors.SCALAR_TYPES:
        assert f.type == ftype and f.type_name is None
    else:
        assert f.type_name == _qualify(ftype)
        expected_kind = "enum" if f.type_name in schema.enums else "message"
        assert f.type == expected_kind
    assert f.has_presence == (label == "optional" or oneof is not None
                              or (f.type == "message" and label == "singular"))


@pytest.mark.parametrize("row", _params("E"))
def test_spec_enum_value(schema, row):
    _, enum, value, number = row
    ed = schema.enum(_qualify(enum))
    assert ed.values[value] == int(number)
    spec_values = [r[2] for r in ROWS if r[0] == "E" and r[1] == enum]
    assert list(ed.values) == spec_values


@pytest.mark.parametrize("row", _params("S"))
def test_spec_method(schema, row):
    _, service, method, req, resp, kind, idem = row
    md = schema.method(service, method)
    assert md.service == f"{PKG}.{service}"
    assert md.input_type == _qualify(req) and md.output_type == _qualify(resp)
    assert md.kind == kind
    assert md.no_side_effects == (idem == "NO_SIDE_EFFECTS")
    assert schema.method_by_path(f"/{PKG}.{service}/{method}") is md
    assert md.path == f"/{PKG}.{service}/{method}"


@pytest.mark.skipif(not HAVE_SPEC, reason=NO_SPEC)
def test_spec_counts_and_no_extras(schema):
    with open(SPEC, encoding="utf-8") as f:
        header = f.read(4000)
    m = re.search(r"Counts: (\d+) \.proto files, (\d+) messages \(\+(\d+) synthetic map-entry "
                  r"messages\), (\d+) enums, (\d+) services, (\d+) methods", header)
    assert m, "the spec header's Counts line changed"
    n_files, n_msgs, n_entries, n_enums, n_svcs, n_methods = map(int, m.groups())
    ours = [md for md in schema.messages.values() if md.full_name.startswith(PKG + ".")]
    assert len([md for md in ours if not md.map_entry]) == n_msgs
    assert len([md for md in ours if md.map_entry]) == n_entries
    assert len([e for e in schema.enums.values() if e.full_name.startswith(PKG + ".")]) == n_enums
    assert len(schema.services) == n_svcs
    assert len(list(schema.iter_methods())) == n_methods
    assert len([p for p in schema.files if p.startswith("ironflow/v1/")]) == n_files
    spec_msgs = {_qualify(r[1]) for r in ROWS if r[0] == "M"}
    assert {md.full_name for md in ours if not md.map_entry} == spec_msgs
    spec_fields = {(_qualify(r[1]), r[2]) for r in ROWS if r[0] == "f"}
    assert {(md.full_name, f.name) for md in ours if not md.map_entry for f in md.fields} == spec_fields
    # Every F row's file exists and is where its declarations live.
    for r in ROWS:
        if r[0] == "F":
            assert r[1] in schema.files
    # The spec documents which services/methods; the connect.md table says 109 unary, 4+2 streams.
    kinds = [m.kind for m in schema.iter_methods()]
    assert kinds.count("server_stream") == 4 and kinds.count("bidi_stream") == 2


# --- generated files, cache, determinism ------------------------------------------------------------


def _gen():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import gen_protos
    finally:
        sys.path.pop(0)
    return gen_protos


@pytest.mark.skipif(not HAVE_SPEC, reason=NO_SPEC)
@pytest.mark.skipif(os.environ.get("IRONFLOW_TEST_PYZ") == "1", reason="checks the source tree")
def test_generated_protos_are_up_to_date_and_deterministic():
    gen = _gen()
    first = gen.generate(SPEC)
    assert first == gen.generate(SPEC)
    shipped = descriptors.read_proto_sources()
    for rel, text in first.items():
        assert shipped.get(rel) == text, f"{rel} is stale: run python3 scripts/gen_protos.py"
    assert sorted(p for p in shipped if p.startswith("ironflow/")) == sorted(first)
    # json_name options appear only where the JSON name is not protoc's default
    for rel, text in first.items():
        for m in re.finditer(r"(\w+) = \d+ \[json_name = \"(\w+)\"\]", text):
            assert parser.default_json_name(m.group(1)) != m.group(2)


@pytest.mark.skipif(not HAVE_SPEC, reason=NO_SPEC)
@pytest.mark.skipif(os.environ.get("IRONFLOW_TEST_PYZ") == "1", reason="checks the source tree")
def test_gen_protos_cli(tmp_path, capsys):
    import shutil

    gen = _gen()
    shutil.copytree(os.path.join(ROOT, "ironflow_pkg", "proto", "google"), tmp_path / "google")
    stale = tmp_path / "ironflow" / "v1" / "retired.proto"
    stale.parent.mkdir(parents=True)
    stale.write_text(gen.HEADER + 'syntax = "proto3";\n')
    hand_written = tmp_path / "ironflow" / "v1" / "extra.proto"
    hand_written.write_text('syntax = "proto3";\npackage ironflow.v1;\nmessage HandWritten {}\n')
    args = ["--spec", SPEC, "--out", str(tmp_path)]
    assert gen.main(args + ["--check"]) == 1
    assert "retired.proto" in capsys.readouterr().err
    assert gen.main(args) == 0
    assert not stale.exists() and hand_written.exists()  # only its own files are removed
    hand_written.unlink()
    assert gen.main(args) == 0
    written = descriptors.read_proto_sources(str(tmp_path))
    assert written == descriptors.read_proto_sources()
    shipped_cache = os.path.join(ROOT, "ironflow_pkg", "proto", descriptors.CACHE_FILE)
    with open(shipped_cache, encoding="utf-8") as f:
        assert (tmp_path / descriptors.CACHE_FILE).read_text(encoding="utf-8") == f.read()
    assert gen.main(args + ["--check"]) == 0
    (tmp_path / "ironflow" / "v1" / "query.proto").write_text("// edited by hand\n")
    assert gen.main(args + ["--check"]) == 1
    assert gen.main(["--spec", str(tmp_path / "missing.txt")]) == 2


@pytest.mark.skipif(os.environ.get("IRONFLOW_TEST_PYZ") == "1", reason="checks the source tree")
def test_schema_cache_is_current():
    path = os.path.join(ROOT, "ironflow_pkg", "proto", descriptors.CACHE_FILE)
    with open(path, encoding="utf-8") as f:
        shipped = f.read()
    assert shipped == descriptors.build_cache_text(), \
        "stale _schema_cache.json: run python3 scripts/gen_protos.py"


def test_parse_is_deterministic_and_matches_cache():
    sources = descriptors.read_proto_sources()
    a = descriptors.schema_to_compact(parser.build_schema(sources))
    b = descriptors.schema_to_compact(parser.build_schema(dict(reversed(list(sources.items())))))
    assert a == b
    parsed = load_schema(reload=True, use_cache=False)
    assert descriptors.last_load_source == "parse"
    cached = load_schema(reload=True)
    assert descriptors.last_load_source == "cache"
    assert descriptors.schema_to_compact(parsed) == descriptors.schema_to_compact(cached) == a
    assert load_schema() is cached  # kept for the process


def test_stale_cache_is_ignored(monkeypatch):
    monkeypatch.setattr(descriptors, "sources_hash", lambda sources: "not-the-hash")
    schema = load_schema(reload=True)
    assert descriptors.last_load_source == "parse"
    assert "ironflow.v1.Run" in schema.messages
    monkeypatch.undo()
    load_schema(reload=True)


def test_load_schema_from_zip(tmp_path):
    """importlib.resources finds the .proto files inside a zip (how ironflow.pyz ships them)."""
    import zipfile

    pyz = tmp_path / "pkg.zip"
    base = os.path.join(ROOT, "ironflow_pkg")
    with zipfile.ZipFile(pyz, "w") as zf:
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in filenames:
                if not name.endswith((".pyc",)):
                    full = os.path.join(dirpath, name)
                    zf.write(full, os.path.relpath(full, ROOT))
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "t = time.perf_counter();"
            "from ironflow_pkg.proto import descriptors as d; s = d.load_schema();"
            "ms = (time.perf_counter() - t) * 1000;"
            "assert 'zip' in d.__file__, d.__file__;"
            "print(len(s.messages), len(list(s.iter_methods())), d.last_load_source, round(ms, 1))")
    r = subprocess.run([sys.executable, "-c", code, str(pyz)], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=60,
                       env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr
    n_msgs, n_methods, source, _ms = r.stdout.split()
    assert int(n_msgs) == len(load_schema().messages)
    assert int(n_methods) == 115
    assert source == "cache"


# --- Schema API ------------------------------------------------------------------------------------


def test_schema_lookups(schema):
    assert schema.message("Run") is schema.message("ironflow.v1.Run")
    assert schema.message("google.protobuf.Struct").full_name == "google.protobuf.Struct"
    assert schema.enum("RunStatus").values["RUN_STATUS_COMPLETED"] == 3
    assert schema.enum("RunStatus").name_of(3) == "RUN_STATUS_COMPLETED"
    assert schema.enum("RunStatus").name_of(1) is None
    with pytest.raises(KeyError):
        schema.message("NoSuchMessage")
    with pytest.raises(KeyError):
        schema.method("IronflowService", "Nope")
    assert schema.method_by_path("/ironflow.v1.IronflowService/getRun") is None
    get_run = schema.method("ironflow.v1.IronflowService", "GetRun")
    assert get_run.output_type == "ironflow.v1.Run" and get_run.no_side_effects
    sub = schema.method("PubSubService", "Subscribe")
    assert sub.kind == "server_stream" and sub.server_streaming and not sub.client_streaming
    bidi = schema.method("WorkerService", "Connect")
    assert bidi.kind == "bidi_stream" and bidi.client_streaming
    assert schema.services["ironflow.v1.QueryService"].name == "QueryService"


def test_field_properties(schema):
    sub = schema.message("SubscribeOptions")
    f = sub.by_name["start_after_sequence"]
    assert f.label == "optional" and f.has_presence and f.wire_type == 0 and f.oneof is None
    assert not sub.by_name["replay"].has_presence and sub.by_name["replay"].default == 0
    run = schema.message("Run")
    assert run.by_name["input"].has_presence and run.by_name["input"].wire_type == 2
    assert run.by_name["status"].is_enum and run.by_name["status"].default == 0
    health = schema.message("HealthResponse").by_name["components"]
    assert health.is_map and not health.is_list and not health.packable
    assert health.type_name == "ironflow.v1.HealthResponse.ComponentsEntry"
    assert health.map_value_type == "ironflow.v1.ComponentHealth"
    rt = schema.message("ListRunsRequest")
    statuses = [f for f in rt.fields if f.is_list and f.is_enum]
    assert statuses and all(f.packable for f in statuses)
    strings = [f for f in rt.fields if f.is_list and f.type == "string"]
    assert all(not f.packable for f in strings)
    value = schema.message("google.protobuf.Value")
    assert value.oneofs == {"kind": ("null_value", "number_value", "string_value", "bool_value",
                                     "struct_value", "list_value")}
    assert schema.message("google.protobuf.Timestamp").by_name["seconds"].type == "int64"


# --- parser on hand-written input ------------------------------------------------------------------


GOOD = """
// leading comment
syntax = "proto3";
/* block
   comment */
package demo.v1;
option go_package = "example.com/demo";
import public "demo/v1/base.proto";

message Outer {
  option deprecated = true;
  reserved 3, 10 to 12;
  reserved "gone";
  message Inner { int32 x = 1; Kind kind = 2; }
  enum Kind { option allow_alias = true; KIND_UNSPECIFIED = 0; KIND_A = 1; KIND_ALIAS = 1; }
  Inner inner = 1;
  repeated .demo.v1.Outer.Inner inners = 2 [deprecated = true];
  optional sint64 maybe = 4;
  map<int32, Inner> by_id = 5 [json_name = "byID"];
  oneof choice {
    string text = 6;
    Base base = 7;
  }
  fixed32 f32 = 8;
  uint32 hex = 0x09;
  bytes blob = 013;
  double ratio = 536870911;
}

service Demo {
  option deprecated = false;
  rpc Unary(Outer) returns (Outer);
  rpc Server(Outer) returns (stream Outer) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Client(stream Outer) returns (Outer) {}
  rpc Bidi(stream Outer) returns (stream Base);
}
"""
BASE = 'syntax = "proto3"; package demo.v1; message Base { string id = 1 [json_name = "ID"]; }'


def test_parser_subset():
    s = parser.build_schema({"demo/v1/demo.proto": GOOD, "demo/v1/base.proto": BASE})
    outer = s.message("demo.v1.Outer")
    assert [f.name for f in outer.fields] == ["inner", "inners", "maybe", "by_id", "text", "base",
                                              "f32", "hex", "blob", "ratio"]
    assert outer.by_name["inner"].type_name == "demo.v1.Outer.Inner"
    assert outer.by_name["inners"].type_name == "demo.v1.Outer.Inner"
    assert outer.by_name["inners"].label == "repeated"
    assert outer.by_name["maybe"].label == "optional" and outer.by_name["maybe"].type == "sint64"
    by_id = outer.by_name["by_id"]
    assert by_id.json_name == "byID" and by_id.map_key_type == "int32"
    assert by_id.map_value_type == "demo.v1.Outer.Inner"
    assert s.message(by_id.type_name).by_number[2].type == "message"
    assert outer.oneofs == {"choice": ("text", "base")}
    assert outer.by_name["base"].type_name == "demo.v1.Base"
    assert outer.by_name["hex"].number == 9 and outer.by_name["blob"].number == 11
    inner = s.message("demo.v1.Outer.Inner")
    assert inner.by_name["kind"].type_name == "demo.v1.Outer.Kind"
    kind = s.enum("demo.v1.Outer.Kind")
    assert kind.values == {"KIND_UNSPECIFIED": 0, "KIND_A": 1, "KIND_ALIAS": 1}
    assert kind.by_number[1] == "KIND_A"
    assert s.message("demo.v1.Base").by_name["id"].json_name == "ID"
    kinds = {m.name: (m.kind, m.no_side_effects) for m in s.service("demo.v1.Demo").methods}
    assert kinds == {"Unary": ("unary", False), "Server": ("server_stream", True),
                     "Client": ("client_stream", False), "Bidi": ("bidi_stream", False)}
    assert s.method("demo.v1.Demo", "Bidi").output_type == "demo.v1.Base"


@pytest.mark.parametrize("text, message", [
    ('syntax = "proto2"; message A {}', "only proto3"),
    ('message A {}', "only proto3"),
    ('syntax = "proto3"; message A { int32 a = 1; int32 b = 1; }', "duplicate field number 1"),
    ('syntax = "proto3"; message A { int32 a = 1; string a = 2; }', "duplicate field name a"),
    ('syntax = "proto3"; message A { int32 a = 19000; }', "invalid field number"),
    ('syntax = "proto3"; message A { int32 a = 0; }', "invalid field number"),
    ('syntax = "proto3"; message A { Missing a = 1; }', "unknown type 'Missing'"),
    ('syntax = "proto3"; message A { Other a = 1; }', "does not import"),
    ('syntax = "proto3"; message A { map<double, string> m = 1; }', "invalid map key type"),
    ('syntax = "proto3"; enum E { E_ONE = 1; }', "must be 0"),
    ('syntax = "proto3"; enum E { E_ZERO = 0; E_DUP = 0; }', "without allow_alias"),
    ('syntax = "proto3"; message A { required int32 a = 1; }', "'required' is not allowed"),
    ('syntax = "proto3"; message A { int32 a = 1 }', "expected ';'"),
    ('syntax = "proto3"; message A { int32 a = 1; } /* never closed', "unterminated comment"),
    ('syntax = "proto3"; message A { int32 a = 1; } $', "unexpected character '$'"),
    ('syntax = "proto3"; message A { int32 a_b = 1; int32 aB = 2; }', "conflicts with a_b"),
    ('syntax = "proto3"; message A {}  message A {}', "already defined"),
    ('syntax = "proto3"; message A {} service S { rpc M(A) returns (E); } enum E { E0 = 0; }',
     "rpc types must be messages"),
    ('syntax = "proto3"; message A { oneof o { repeated int32 x = 1; } }', "cannot have labels"),
    ('syntax = "proto3"; import "nowhere.proto";', "not found"),
])
def test_parser_errors(text, message):
    other = 'syntax = "proto3"; message Other {}'
    with pytest.raises(SchemaError) as info:
        parser.build_schema({"t/a.proto": text, "t/other.proto": other})
    assert message in str(info.value)
    assert str(info.value).startswith("t/a.proto")


def test_parser_error_position():
    with pytest.raises(SchemaError) as info:
        parser.build_schema({"x.proto": 'syntax = "proto3";\nmessage A {\n  Nope a = 1;\n}\n'})
    assert str(info.value).startswith("x.proto:3:8: unknown type 'Nope'")


def test_cache_text_is_compact_json():
    data = json.loads(descriptors.build_cache_text())
    assert data["version"] == descriptors.CACHE_VERSION
    assert data["sha256"] == descriptors.sources_hash(descriptors.read_proto_sources())
