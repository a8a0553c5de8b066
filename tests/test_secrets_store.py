"""SecretStore (features.md §8, rest-api.md §3.22) on a real file journal."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from ironflow_pkg import aesgcm
from ironflow_pkg.errors import ApiError
from ironflow_pkg.journal import Journal
from ironflow_pkg.secrets_store import MAX_VALUE_BYTES, SecretStore

KEY = "a1" * 32
OTHER_KEY = "b2" * 32
ENV = "env_default"
ENV2 = "env_two"
META_KEYS = {"name", "revision", "description", "created_at", "updated_at"}


@pytest.fixture
def journal(tmp_path):
    j = Journal(str(tmp_path / "s.db"))
    j.open()
    j.write_sync(lambda c: c.execute(
        "INSERT INTO environments (id, name, org_id, project_id, created_at) "
        "VALUES (?, 'two', 'org_default', 'proj', '2024-01-01T00:00:00.000Z')", (ENV2,)))
    yield j
    j.close()


def run(coro):
    return asyncio.run(coro)


def raw_db(journal: Journal) -> bytes:
    journal.close()  # checkpoints the WAL into the main file
    data = b""
    for suffix in ("", "-wal"):
        if os.path.exists(journal.path + suffix):
            with open(journal.path + suffix, "rb") as f:
                data += f.read()
    return data


def rows(journal: Journal):
    return journal.read_sync(lambda c: [dict(r) for r in c.execute(
        "SELECT * FROM secrets ORDER BY env_id, name")])


def code_of(exc_info) -> str:
    return exc_info.value.code


@pytest.mark.parametrize("key", [KEY, ""])
def test_round_trip(journal, key):
    store = SecretStore(journal, key)
    assert store.plaintext is (key == "")
    meta = run(store.create(ENV, "API", "s3cr3t", "the api key"))
    assert set(meta) == META_KEYS
    assert meta["name"] == "API" and meta["revision"] == 1 and meta["description"] == "the api key"
    assert meta["created_at"] == meta["updated_at"] and meta["created_at"].endswith("Z")
    run(store.put(ENV, "DB_URL", "postgres://u:p@h/db ünïcødé ✓"))
    assert run(store.resolve(ENV, ["API", "DB_URL"])) == {
        "API": "s3cr3t", "DB_URL": "postgres://u:p@h/db ünïcødé ✓"}
    assert run(store.resolve(ENV, [])) == {}
    assert run(store.resolve(ENV, ["API", "API"])) == {"API": "s3cr3t"}
    row = rows(journal)[0]
    assert row["encrypted"] == (1 if key else 0)
    assert row["value"].startswith("v1:" if key else "plain:")
    # a fresh store over the same journal (restart) reads the same values
    assert run(SecretStore(journal, key).resolve(ENV, ["API"])) == {"API": "s3cr3t"}


def test_stored_format_matches_spec(journal):
    """features.md §8: 'v1:' + base64(nonce 12 ‖ ciphertext ‖ tag 16), AAD = '<env>/<name>'."""
    run(SecretStore(journal, KEY).put(ENV, "API", "s3cr3t"))
    blob = base64.b64decode(rows(journal)[0]["value"][3:])
    assert len(blob) == 12 + len("s3cr3t") + 16
    plain = aesgcm.decrypt(bytes.fromhex(KEY), blob[:12], blob[12:], f"{ENV}/API".encode())
    assert plain == b"s3cr3t"


def test_nonce_is_fresh_per_write(journal):
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "A", "same"))
    first = rows(journal)[0]["value"]
    run(store.put(ENV, "A", "same"))
    second = rows(journal)[0]["value"]
    assert first != second
    assert base64.b64decode(first[3:])[:12] != base64.b64decode(second[3:])[:12]


def test_plaintext_not_in_db_file_when_encrypted(journal):
    marker = "PLAINTEXT-MARKER-" + os.urandom(8).hex()
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "S", marker))
    run(store.put(ENV, "BIG", marker * 100))
    data = raw_db(journal)
    assert b"PLAINTEXT-MARKER-" not in data
    assert base64.b64encode(marker.encode()) not in data


def test_plaintext_mode_stores_base64_without_key(tmp_path):
    j = Journal(str(tmp_path / "p.db"))
    j.open()
    marker = "PLAIN-" + os.urandom(8).hex()
    run(SecretStore(j, "").put(ENV, "S", marker))
    assert base64.b64encode(marker.encode()) in raw_db(j)


def test_swapping_rows_fails_resolution(journal):
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "A", "alpha"))
    run(store.put(ENV, "B", "beta"))
    run(store.put(ENV2, "A", "alpha-two"))

    def swap(conn):
        a = conn.execute("SELECT value FROM secrets WHERE env_id=? AND name='A'", (ENV,)).fetchone()[0]
        b = conn.execute("SELECT value FROM secrets WHERE env_id=? AND name='B'", (ENV,)).fetchone()[0]
        conn.execute("UPDATE secrets SET value=? WHERE env_id=? AND name='A'", (b, ENV))
        conn.execute("UPDATE secrets SET value=? WHERE env_id=? AND name='B'", (a, ENV))

    journal.write_sync(swap)
    assert run(store.resolve(ENV, ["A"])) == "A"
    assert run(store.resolve(ENV, ["B"])) == "B"

    def copy_across_envs(conn):  # same name, other environment
        v = conn.execute("SELECT value FROM secrets WHERE env_id=? AND name='A'", (ENV2,)).fetchone()[0]
        conn.execute("UPDATE secrets SET value=? WHERE env_id=? AND name='A'", (v, ENV))

    journal.write_sync(copy_across_envs)
    assert run(store.resolve(ENV, ["A"])) == "A"
    assert run(store.resolve(ENV2, ["A"])) == {"A": "alpha-two"}
    assert sorted(run(store.undecryptable())) == [(ENV, "A"), (ENV, "B")]


def test_tampered_value_is_missing(journal):
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "A", "alpha"))
    v = rows(journal)[0]["value"]
    blob = bytearray(base64.b64decode(v[3:]))
    blob[13] ^= 1
    bad = "v1:" + base64.b64encode(bytes(blob)).decode()
    journal.write_sync(lambda c: c.execute("UPDATE secrets SET value=?", (bad,)))
    assert run(store.resolve(ENV, ["A"])) == "A"
    for garbage in ("v1:!!!", "v1:", "v1:" + base64.b64encode(b"short").decode(), "other:x"):
        journal.write_sync(lambda c, g=garbage: c.execute("UPDATE secrets SET value=?", (g,)))
        assert run(store.resolve(ENV, ["A"])) == "A"


def test_resolve_reports_first_missing_in_order(journal):
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "A", "1"))
    run(store.put(ENV, "C", "3"))
    assert run(store.resolve(ENV, ["A", "B", "C", "D"])) == "B"
    assert run(store.resolve(ENV, ["D", "A"])) == "D"
    assert run(store.resolve(ENV2, ["A"])) == "A"  # env-scoped
    assert run(store.resolve(ENV, ["not a valid name"])) == "not a valid name"


def test_list_and_metadata_never_contain_values(journal):
    store = SecretStore(journal, KEY)
    run(store.create(ENV, "B", "value-b-xyz", "desc"))
    run(store.create(ENV, "A", "value-a-xyz"))
    run(store.create(ENV2, "Z", "value-z-xyz"))
    listed = run(store.list(ENV))
    assert [m["name"] for m in listed] == ["A", "B"]
    for m in listed + [run(store.get_metadata(ENV, "B"))]:
        assert set(m) == META_KEYS
        assert not any("xyz" in str(v) for v in m.values())
    assert run(store.list(ENV2))[0]["name"] == "Z"
    assert run(store.list("env_none")) == []


def test_revision_increments_and_description(journal):
    store = SecretStore(journal, KEY)
    m1 = run(store.put(ENV, "A", "1", "first"))
    m2 = run(store.put(ENV, "A", "2"))  # description omitted -> kept
    m3 = run(store.put(ENV, "A", "3", ""))
    assert (m1["revision"], m2["revision"], m3["revision"]) == (1, 2, 3)
    assert (m1["description"], m2["description"], m3["description"]) == ("first", "first", "")
    assert m3["created_at"] == m1["created_at"]
    assert run(store.get_metadata(ENV, "A"))["revision"] == 3
    assert run(store.resolve(ENV, ["A"])) == {"A": "3"}


def test_create_is_create_only(journal):
    store = SecretStore(journal, KEY)
    run(store.create(ENV, "A", "1"))
    with pytest.raises(ApiError) as e:
        run(store.create(ENV, "A", "2"))
    assert code_of(e) == "already_exists" and e.value.status == 409
    assert run(store.resolve(ENV, ["A"])) == {"A": "1"}
    run(store.create(ENV2, "A", "other env"))  # names are per environment


def test_delete(journal):
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "A", "1"))
    run(store.put(ENV, "A", "2"))
    gone = run(store.delete(ENV, "A"))
    assert gone["name"] == "A" and gone["revision"] == 2
    assert run(store.resolve(ENV, ["A"])) == "A"
    for call in (store.delete(ENV, "A"), store.get_metadata(ENV, "A")):
        with pytest.raises(ApiError) as e:
            run(call)
        assert code_of(e) == "not_found" and e.value.status == 404
    assert run(store.create(ENV, "A", "again"))["revision"] == 1


def test_patch_rename_and_describe(journal):
    store = SecretStore(journal, KEY)
    run(store.put(ENV, "A", "alpha", "d"))
    run(store.put(ENV, "A", "alpha2"))
    run(store.put(ENV, "B", "beta"))
    m = run(store.patch(ENV, "A", description="new"))
    assert m["description"] == "new" and m["revision"] == 2 and m["name"] == "A"
    with pytest.raises(ApiError) as e:
        run(store.patch(ENV, "A", new_name="B"))
    assert code_of(e) == "already_exists"
    m = run(store.patch(ENV, "A", new_name="C"))
    assert m["name"] == "C" and m["revision"] == 2 and m["description"] == "new"
    # re-encrypted under the new AAD: the value resolves under its new name
    assert run(store.resolve(ENV, ["C", "B"])) == {"C": "alpha2", "B": "beta"}
    assert run(store.resolve(ENV, ["A"])) == "A"
    with pytest.raises(ApiError) as e:
        run(store.patch(ENV, "A", description="x"))
    assert code_of(e) == "not_found"
    with pytest.raises(ApiError) as e:
        run(store.patch(ENV, "C", new_name="bad name"))
    assert code_of(e) == "invalid_argument"


def test_patch_rename_of_undecryptable_value_is_refused(journal):
    run(SecretStore(journal, OTHER_KEY).put(ENV, "A", "alpha"))
    with pytest.raises(ApiError) as e:
        run(SecretStore(journal, KEY).patch(ENV, "A", new_name="B"))
    assert code_of(e) == "failed_precondition"
    assert run(SecretStore(journal, KEY).patch(ENV, "A", description="ok"))["description"] == "ok"


@pytest.mark.parametrize("name", ["", "1abc", "-a", ".a", "a b", "a/b", "é", "a" * 129, None, 5,
                                  "a\n", "a$"])
def test_invalid_names(journal, name):
    store = SecretStore(journal, KEY)
    for call in (lambda: store.put(ENV, name, "v"), lambda: store.create(ENV, name, "v"),
                 lambda: store.get_metadata(ENV, name), lambda: store.delete(ENV, name)):
        with pytest.raises(ApiError) as e:
            run(call())
        assert code_of(e) == "invalid_argument" and e.value.status == 400


@pytest.mark.parametrize("name", ["a", "_", "A_b.c-d", "x" * 128, "OPENAI_API_KEY", "_1.2-3"])
def test_valid_names(journal, name):
    store = SecretStore(journal, KEY)
    assert run(store.put(ENV, name, "v"))["name"] == name
    assert run(store.resolve(ENV, [name])) == {name: "v"}


def test_value_size_and_type(journal):
    store = SecretStore(journal, KEY)
    biggest = "x" * MAX_VALUE_BYTES
    assert MAX_VALUE_BYTES == 65536
    run(store.put(ENV, "BIG", biggest))
    assert run(store.resolve(ENV, ["BIG"])) == {"BIG": biggest}
    for bad in ("x" * (MAX_VALUE_BYTES + 1), "é" * (MAX_VALUE_BYTES // 2 + 1), b"bytes", None, 5,
                "\ud800"):
        with pytest.raises(ApiError) as e:
            run(store.put(ENV, "BAD", bad))
        assert code_of(e) == "invalid_argument"
    run(store.put(ENV, "EMPTY", ""))
    assert run(store.resolve(ENV, ["EMPTY"])) == {"EMPTY": ""}
    with pytest.raises(ApiError):
        run(store.put(ENV, "D", "v", "d" * 5000))
    with pytest.raises(ApiError):
        run(store.put(ENV, "D", "v", 7))
    assert run(store.list(ENV))[0]["name"] == "BIG" and len(run(store.list(ENV))) == 2


def test_wrong_key_reports_missing_but_metadata_works(journal):
    run(SecretStore(journal, OTHER_KEY).put(ENV, "A", "alpha", "desc"))
    store = SecretStore(journal, KEY)
    assert run(store.resolve(ENV, ["A"])) == "A"
    assert run(store.get_metadata(ENV, "A"))["description"] == "desc"
    assert [m["name"] for m in run(store.list(ENV))] == ["A"]
    assert run(store.undecryptable()) == [(ENV, "A")]
    assert store.undecryptable_sync() == [(ENV, "A")]
    # no key at all: encrypted rows are unreadable too
    assert run(SecretStore(journal, "").resolve(ENV, ["A"])) == "A"
    # a new value under the current key repairs it (revision continues)
    assert run(store.put(ENV, "A", "fixed"))["revision"] == 2
    assert run(store.resolve(ENV, ["A"])) == {"A": "fixed"}
    assert run(store.undecryptable()) == []


def test_plain_rows_stay_readable_after_a_key_is_set(journal):
    run(SecretStore(journal, "").put(ENV, "A", "alpha"))
    store = SecretStore(journal, KEY)
    assert run(store.resolve(ENV, ["A"])) == {"A": "alpha"}
    run(store.put(ENV, "A", "alpha"))
    assert rows(journal)[0]["encrypted"] == 1


def test_bad_master_key_is_refused(journal):
    for bad in ("abc", "g" * 64, "a1" * 16, "a1" * 33):
        with pytest.raises(ValueError):
            SecretStore(journal, bad)
    SecretStore(journal, KEY.upper())


def test_concurrent_puts_get_distinct_revisions(journal):
    store = SecretStore(journal, KEY)

    async def many():
        return await asyncio.gather(*(store.put(ENV, "A", f"v{i}") for i in range(20)))

    metas = run(many())
    assert sorted(m["revision"] for m in metas) == list(range(1, 21))
    assert run(store.get_metadata(ENV, "A"))["revision"] == 20
