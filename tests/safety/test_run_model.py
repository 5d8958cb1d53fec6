# ruff: noqa: E501  (SQL cases read best on one line each)
"""The gate analyses the pending migrations as one run, over a model of the target: what an
earlier migration created is new, what is dropped is gone, names resolve through search_path."""

from __future__ import annotations

import io
import json
from pathlib import Path

from job.safety import Report, SafetyConfig, SqlFile, analyze, lint_main


def _run(*texts: str, transactional: bool = True, applied: tuple[str, ...] = ()) -> Report:
    files = [SqlFile(f"000{i}_m", f"m/000{i}_m.sql", t, transactional) for i, t in enumerate(texts, 1)]
    seed = [SqlFile(f"00{i}_seed", f"m/00{i}_seed.sql", t, True) for i, t in enumerate(applied)]
    return analyze(files, server_version_num=180001, stats=None, config=SafetyConfig(), applied=seed)


def _fired(report: Report, rule: str, migration: str | None = None) -> list[str]:
    return [f.message for f in report.findings
            if f.rule == rule and (migration is None or f.migration == migration)]


def test_table_created_by_an_earlier_migration_of_the_run_is_new() -> None:
    report = _run("CREATE TABLE t (a bigint, b bigint);",
                  "CREATE INDEX t_a ON t (a);\nALTER TABLE t DROP COLUMN b;\nTRUNCATE t;",
                  "DROP TABLE t;")
    assert report.blocking() == []
    assert not _fired(report, "LK01") and not _fired(report, "DL02") and not _fired(report, "DL01")


def test_a_table_in_another_schema_with_the_same_name_is_not_exempt() -> None:
    report = _run("CREATE SCHEMA new;\nCREATE TABLE new.t (a bigint);", "DROP TABLE existing.t;\nDROP TABLE new.t;")
    assert [f.message for f in report.blocking()] == [
        "DROP TABLE existing.t: the table and all its rows are deleted"]


def test_search_path_decides_where_an_unqualified_table_is_created() -> None:
    report = _run("CREATE SCHEMA app;\nSET search_path TO app;\nCREATE TABLE t (a bigint);",
                  "DROP TABLE app.t;\nDROP TABLE public.t;")
    assert [f.message.split(":")[0] for f in report.blocking()] == ["DROP TABLE public.t"]
    dump_style = _run("SELECT pg_catalog.set_config('search_path', 'app', false);\nCREATE TABLE t (a bigint);",
                      "DROP TABLE app.t;")
    assert dump_style.blocking() == []


def test_a_table_created_then_rolled_back_is_not_new() -> None:
    report = _run("BEGIN;\nCREATE TABLE t (a bigint);\nROLLBACK;\nDROP TABLE t;", transactional=False)
    assert _fired(report, "DL01") == ["DROP TABLE t: the table and all its rows are deleted"]
    savepoint = _run("BEGIN;\nSAVEPOINT s;\nCREATE TABLE t (a bigint);\nROLLBACK TO SAVEPOINT s;\nCOMMIT;\nDROP TABLE t;", transactional=False)
    assert _fired(savepoint, "DL01")
    kept = _run("BEGIN;\nCREATE TABLE t (a bigint);\nCOMMIT;\nDROP TABLE t;", transactional=False)
    assert not _fired(kept, "DL01")


def test_select_into_and_create_table_as_create_tables() -> None:
    report = _run("SELECT 1 AS a INTO t2;\nCREATE TABLE t3 AS SELECT 1 AS a;\nCREATE MATERIALIZED VIEW mv AS SELECT 1 AS a;",
                  "DROP TABLE t2;\nTRUNCATE t3;\nREFRESH MATERIALIZED VIEW mv;")
    assert report.blocking() == [] and not _fired(report, "LK13")


def test_a_column_added_by_an_earlier_migration_is_new() -> None:
    report = _run("ALTER TABLE orders ADD COLUMN x bigint;", "ALTER TABLE orders ALTER COLUMN x TYPE int;\nALTER TABLE orders DROP COLUMN x;")
    assert not _fired(report, "DL02") and not _fired(report, "DL08")
    old = _run("ALTER TABLE orders DROP COLUMN y;")
    assert _fired(old, "DL02")


def test_offline_messages_never_claim_the_table_exists() -> None:
    report = _run("CREATE INDEX i ON orders (a);\nUPDATE orders SET a = 1 WHERE id = 2;")
    messages = " ".join(f.message for f in report.findings)
    assert "existing" not in messages
    assert "on table orders" in messages


def test_renamed_objects_keep_their_identity() -> None:
    # An enum created by the run and renamed is still new: adding a value to it breaks nobody.
    report = _run("CREATE TYPE mood AS ENUM ('ok');", "ALTER TYPE mood RENAME TO feeling;\nALTER TYPE feeling ADD VALUE 'meh';")
    assert not _fired(report, "BC17")
    report = _run("CREATE TABLE t (a bigint);", "ALTER TABLE t RENAME TO u;\nALTER TABLE u RENAME COLUMN a TO b;\nALTER TABLE u DROP COLUMN b;")
    assert not _fired(report, "DL02") and not _fired(report, "BC02")


def test_validated_not_null_check_from_an_earlier_migration_exempts_set_not_null() -> None:
    # Our own LK08 recipe, split across migrations as LK10 asks.
    report = _run("ALTER TABLE orders ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;",
                  "ALTER TABLE orders VALIDATE CONSTRAINT a_nn;",
                  "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;")
    assert not _fired(report, "LK08") and not _fired(report, "DD03", "0003_m")
    # From a migration assumed applied already (lint --assume-applied, or the database).
    seeded = _run("ALTER TABLE orders ALTER COLUMN a SET NOT NULL;",
                  applied=("CREATE TABLE orders (a int, CONSTRAINT a_nn CHECK (a IS NOT NULL));",))
    assert not _fired(seeded, "LK08")
    unvalidated = _run("ALTER TABLE orders ALTER COLUMN a SET NOT NULL;",
                       applied=("CREATE TABLE orders (a int);\nALTER TABLE orders ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;",))
    assert _fired(unvalidated, "LK08")


def test_type_change_under_a_check_constraint_scans_even_when_binary_coercible() -> None:
    with_check = _run("ALTER TABLE t ALTER COLUMN v TYPE varchar(20);",
                      applied=("CREATE TABLE t (v varchar(10) CHECK (length(v) > 0));",))
    assert any("CHECK constraint t_v_check" in m for m in _fired(with_check, "RW01"))
    without = _run("ALTER TABLE t ALTER COLUMN v TYPE varchar(20);", applied=("CREATE TABLE t (v varchar(10));",))
    assert not _fired(without, "RW01")


def _lint(paths: list[str], tmp_path: Path, **kw: object) -> tuple[int, dict]:
    out, err = io.StringIO(), io.StringIO()
    code = lint_main(paths, fmt="json", pg_version=18, config_dir=str(tmp_path), out=out, err=err, **kw)  # type: ignore[arg-type]
    return code, (json.loads(out.getvalue()) if out.getvalue() else {"error": err.getvalue()})


def _write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    return d


def test_lint_walks_the_directory_in_dependency_order_like_run(tmp_path: Path) -> None:
    # By name 0001 comes first, but it depends on 0002: run applies 0002 first.
    d = _write(tmp_path / "m", {
        "0001_drop.sql": "-- depends: 0002_create\nDROP TABLE scratch;\n",
        "0002_create.sql": "CREATE TABLE scratch (a bigint);\n",
    })
    code, data = _lint([str(d)], tmp_path)
    assert code == 0 and data["summary"]["blocking"] == 0, data


def test_lint_ignores_subdirectories_run_never_applies(tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {
        "0001_ok.sql": "CREATE TABLE t (a bigint);\n",
        "old/0009_drop.sql": "DROP TABLE customers;\n",
    })
    code, data = _lint([str(d)], tmp_path)
    assert code == 0 and data["files"] == 1 and data["findings"] == []


def test_lint_checks_rollback_scripts_in_the_up_migrations_mode(tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {
        "0001_idx.sql": "CREATE TABLE t (a bigint);\n",
        # yoyo runs this in a transaction (the up's mode): CONCURRENTLY would fail there.
        "0001_idx.rollback.sql": "-- transactional: false\nCREATE INDEX CONCURRENTLY i ON customers (a);\nDROP TABLE t;\n",
    })
    code, data = _lint([str(d)], tmp_path)
    rules = {(f["rule"], f["path"].rsplit("/", 1)[1]) for f in data["findings"]}
    assert ("TX01", "0001_idx.rollback.sql") in rules
    assert ("AN06", "0001_idx.rollback.sql") in rules
    assert ("DL01", "0001_idx.rollback.sql") not in rules  # it drops what its own up created
    assert code == 6


def test_lint_assume_applied_judges_new_migrations_against_the_old_schema(tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {
        "0001_init.sql": "CREATE TABLE users (id bigint, email text);\n",
        "0002_drop.sql": "ALTER TABLE users DROP COLUMN email;\n",
    })
    assert _lint([str(d)], tmp_path)[0] == 0  # a fresh database: nothing to lose
    code, data = _lint([str(d)], tmp_path, assume_applied="0001_init")
    assert code == 6 and [f["rule"] for f in data["findings"] if f["blocking"]] == ["DL02"]
    assert data["files"] == 1
    code, data = _lint([str(d)], tmp_path, assume_applied="nope")
    assert code == 2 and "nope" in data["error"]
