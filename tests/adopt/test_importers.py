"""What each importer knows about its tool: file formats, history quirks, refusals, locks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pytest

from job.adopt import flyway, importer
from job.adopt.convert import convert
from job.adopt.golang_migrate import advisory_lock_id
from job.adopt.model import TableName
from job.errors import ConfigError
from tests.adopt.helpers import cli_env, execute, run_node_tool
from tests.adopt.scenarios import (
    M1,
    M2,
    FlywayScenario,
    GolangMigrateScenario,
    KnexScenario,
    PrismaScenario,
)
from tests.core.helpers import applied_ids, summary


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _import(run_job: Any, url: str, tmp_path: Path, tool: str, source: Path, *extra: str) -> Any:
    return run_job("import", "--from", tool, "--source", str(source), "--yes", *extra,
                   env=cli_env(url, tmp_path / "out"))


# -- Flyway --------------------------------------------------------------------------------------
def test_flyway_checksum_ignores_line_endings_and_bom_and_java_hash_matches_java() -> None:
    assert flyway.checksum("a;\r\nb;\r\n") == flyway.checksum("a;\nb;\n") == \
        flyway.checksum("\ufeffa;\nb;")
    assert flyway.checksum("a;\nb;\n") != flyway.checksum("a;\nc;\n")
    assert flyway.java_string_hash("hello") == 99162322  # "hello".hashCode() in Java
    lock = flyway.Flyway().lock(TableName("public", "flyway_schema_history"), "db")
    assert lock.advisory_keys == (77431708279161 + flyway.java_string_hash(
        '"public"."flyway_schema_history"'),)


def test_flyway_repeatable_migrations_are_refused_naming_them(tmp_path: Path) -> None:
    root = _write(tmp_path / "sql", {"V1__init.sql": M1, "R__views.sql": "SELECT 1;"})
    with pytest.raises(ConfigError, match=r"repeatable Flyway migrations.*R__views\.sql"):
        flyway.Flyway().read_files(root)


def test_flyway_versions_undo_scripts_and_script_config(tmp_path: Path) -> None:
    root = _write(tmp_path / "sql", {
        "V1__init.sql": M1, "U1__init.sql": "DROP TABLE items;",
        "sub/V1_10__later.sql": "SELECT 2;", "V1_2__two.sql": "SELECT 1;",
        "V1_2__two.sql.conf": "# comment\nexecuteInTransaction=false\n",
        "afterMigrate.sql": "SELECT 3;"})
    files = flyway.Flyway().read_files(root)
    assert [(f.key, f.name) for f in files] == [("1", "init"), ("1.2", "two"),
                                                 ("1.10", "later")]
    assert files[0].down == "DROP TABLE items;"
    assert not files[1].transactional and "executeInTransaction=false" in files[1].declared
    c = convert(files[1], "0002_two", "0001_init", tool="flyway", root=str(root),
                server_version=180000)
    assert "-- transactional: false" in c.text and "-- depends: 0001_init" in c.text


def _flyway_db(url: str, tmp_path: Path) -> Path:
    return FlywayScenario("flyway").build(url, tmp_path / "work")


def test_flyway_failed_migration_is_refused(database_url: str, run_job: Any,
                                            tmp_path: Path) -> None:
    source = _flyway_db(database_url, tmp_path)
    execute(database_url, "UPDATE flyway_schema_history SET success = false "
                          "WHERE installed_rank = 3")
    res = _import(run_job, database_url, tmp_path, "flyway", source)
    assert res.returncode == 5, res.stderr
    assert "flyway repair" in summary(res.stderr)["message"]
    assert applied_ids(database_url) == [] and not (tmp_path / "out").exists()


def test_flyway_file_changed_since_applied_is_refused(database_url: str, run_job: Any,
                                                      tmp_path: Path) -> None:
    source = _flyway_db(database_url, tmp_path)
    (source / "V1_1__add_note.sql").write_text(M2 + "-- edited later\n")
    res = _import(run_job, database_url, tmp_path, "flyway", source)
    assert res.returncode == 5, res.stderr
    assert "V1_1__add_note.sql changed since Flyway applied it" in summary(res.stderr)["message"]


def test_flyway_baseline_row_and_undo_rows_decide_what_is_applied(database_url: str,
                                                                  tmp_path: Path) -> None:
    files = flyway.Flyway().read_files(_write(tmp_path / "sql", {
        "V1__a.sql": "SELECT 1;", "V2__b.sql": "SELECT 2;", "V3__c.sql": "SELECT 3;",
        "V4__d.sql": "SELECT 4;"}))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("""CREATE TABLE flyway_schema_history (installed_rank INT PRIMARY KEY,
            version VARCHAR(50), description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL,
            script VARCHAR(1000) NOT NULL, checksum INTEGER, installed_by VARCHAR(100) NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT now(), execution_time INTEGER NOT NULL,
            success BOOLEAN NOT NULL)""")
        rows = [(1, "2", "<< Flyway Baseline >>", "BASELINE", "<< Flyway Baseline >>", None),
                (2, "3", "c", "SQL", "V3__c.sql", flyway.checksum("SELECT 3;")),
                (3, "3", "c", "UNDO_SQL", "U3__c.sql", None),
                (4, "4", "d", "SQL", "V4__d.sql", flyway.checksum("SELECT 4;"))]
        for r in rows:
            conn.execute("INSERT INTO flyway_schema_history VALUES (%s, %s, %s, %s, %s, %s, "
                         "'me', now(), 1, true)", r)
        history = flyway.Flyway().read_history(conn, TableName("public", "flyway_schema_history"),
                                               files)
    assert [r.key for r in history.recorded] == ["1", "2", "4"]
    assert any("baseline at version 2" in n for n in history.notes)


# -- golang-migrate ----------------------------------------------------------------------------
def test_golang_migrate_lock_ids_match_its_own_test_vectors() -> None:
    # database/util_test.go in golang-migrate/migrate
    assert advisory_lock_id("database_name") == 1764327054
    assert advisory_lock_id("database_name", "schema_name_1") == 3244152297
    assert advisory_lock_id("database_name", "schema_name_2") == 810103531


def test_golang_migrate_dirty_database_is_refused(database_url: str, run_job: Any,
                                                  tmp_path: Path) -> None:
    source = GolangMigrateScenario("golang-migrate").build(database_url, tmp_path / "work")
    execute(database_url, "UPDATE schema_migrations SET dirty = true")
    res = _import(run_job, database_url, tmp_path, "golang-migrate", source)
    assert res.returncode == 5, res.stderr
    message = summary(res.stderr)["message"]
    assert "dirty" in message and "migrate force 3" in message
    assert applied_ids(database_url) == []


def test_golang_migrate_reads_dbmate_table_as_someone_elses(database_url: str, run_job: Any,
                                                            tmp_path: Path) -> None:
    source = _write(tmp_path / "m", {"1_a.up.sql": "SELECT 1;"})
    execute(database_url, "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
    res = _import(run_job, database_url, tmp_path, "golang-migrate", source)
    assert res.returncode == 2
    assert "does not look like golang-migrate's history table" in summary(res.stderr)["message"]


def test_golang_migrate_version_without_file_is_reported(database_url: str, run_job: Any,
                                                         tmp_path: Path) -> None:
    source = GolangMigrateScenario("golang-migrate").build(database_url, tmp_path / "work")
    for name in ("3_name_index.up.sql", "3_name_index.down.sql"):
        (source / name).unlink()
    res = run_job("import", "--from", "golang-migrate", "--source", str(source), "--dry-run",
                  env=cli_env(database_url, tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "but no file" in res.stdout and "version 3" in res.stdout


# -- Prisma --------------------------------------------------------------------------------------
def test_prisma_failed_migration_is_refused_and_rolled_back_ones_ignored(
        database_url: str, run_job: Any, tmp_path: Path) -> None:
    source = PrismaScenario("prisma").build(database_url, tmp_path / "work")
    execute(database_url, "INSERT INTO _prisma_migrations (id, checksum, migration_name, "
                          "rolled_back_at) VALUES ('x1', 'abc', '20240105000000_gone', now())")
    res = run_job("import", "--from", "prisma", "--source", str(source), "--dry-run",
                  env=cli_env(database_url, tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "20240105000000_gone" not in res.stdout
    execute(database_url, "UPDATE _prisma_migrations SET finished_at = NULL "
                          "WHERE migration_name = '20240102000000_note'")
    res = _import(run_job, database_url, tmp_path, "prisma", source)
    assert res.returncode == 5, res.stderr
    assert "prisma migrate resolve" in summary(res.stderr)["message"]


def test_prisma_checksum_is_line_ending_agnostic_and_detects_edits() -> None:
    from job.adopt.prisma import checksum_matches

    recorded = hashlib.sha256(b"a;\r\nb;\r\n").hexdigest()
    assert checksum_matches("a;\nb;\n", recorded)
    assert not checksum_matches("a;\nc;\n", recorded)


# -- dbmate, node-pg-migrate, Diesel -----------------------------------------------------------
def test_dbmate_sections_and_options(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", {
        "20240101_a.sql": "-- comment\n-- migrate:up transaction:false\nCREATE INDEX "
                          "CONCURRENTLY i ON t (x);\n-- migrate:down\nDROP INDEX i;\n",
        "20240102_b.sql": "-- migrate:up\nSELECT 1;\n"})
    a, b = importer("dbmate").read_files(root)
    assert (a.up, a.down, a.transactional) == ("CREATE INDEX CONCURRENTLY i ON t (x);\n",
                                              "DROP INDEX i;\n", False)
    assert (b.down, b.transactional) == (None, True)
    _write(root, {"20240103_c.sql": "SELECT 0;\n-- migrate:up\nSELECT 1;\n"})
    with pytest.raises(ConfigError, match="statements before '-- migrate:up'"):
        importer("dbmate").read_files(root)


def test_node_pg_migrate_sql_sections_and_grouped_files(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", {
        "1_a.sql": "-- Up Migration\nSELECT 1;\n-- Down Migration\nSELECT 2;\n",
        "2_b.up.sql": "SELECT 3;\n", "2_b.down.sql": "SELECT 4;\n",
        "10_c.sql": "SELECT 5;\n", ".hidden.sql": "broken"})
    files = importer("node-pg-migrate").read_files(root)
    assert [(f.key, f.up, f.down) for f in files] == [
        ("1_a", "-- Up Migration\nSELECT 1;\n", "-- Down Migration\nSELECT 2;\n"),
        ("2_b", "SELECT 3;\n", "SELECT 4;\n"), ("10_c", "SELECT 5;\n", None)]


def test_diesel_versions_and_metadata(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", {
        "2024-01-02-000000_b/up.sql": "SELECT 2;", "2024-01-02-000000_b/metadata.toml":
        "run_in_transaction = false\n", "00000000000000_diesel_initial_setup/up.sql": "SELECT 1;",
        "00000000000000_diesel_initial_setup/down.sql": "SELECT 0;"})
    files = importer("diesel").read_files(root)
    assert [(f.key, f.name, f.transactional) for f in files] == [
        ("00000000000000", "diesel_initial_setup", True), ("20240102000000", "b", False)]
    (root / "broken").mkdir()
    with pytest.raises(ConfigError, match="no up.sql"):
        importer("diesel").read_files(root)


def test_node_pg_migrate_history_with_javascript_is_adopted_by_a_baseline(
        node_tools: None, database_url: str, fresh_url: str, run_job: Any,
        tmp_path: Path) -> None:
    from tests.adopt.helpers import node_tool, schema_of

    root = _write(tmp_path / "work" / "migrations", {
        "1700000000001_init.sql": f"-- Up Migration\n{M1}",
        "1700000000002_add-note.js": "exports.up = (pgm) => { pgm.addColumn('items', "
                                     "{ note: { type: 'text' } }); };\n"})
    run_node_tool([str(node_tool("node-pg-migrate")), "up", "-m", str(root)],
                  cwd=tmp_path / "work", url=database_url)
    mdir = tmp_path / "out"
    res = _import(run_job, database_url, tmp_path, "node-pg-migrate", root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [p.name for p in mdir.iterdir()] == ["0001_node_pg_migrate_baseline.sql"]
    assert "written in code" in (mdir / "0001_node_pg_migrate_baseline.sql").read_text()
    assert run_job("run", env=cli_env(fresh_url, mdir)).returncode == 0
    assert schema_of(fresh_url) == schema_of(database_url)


# -- knex ----------------------------------------------------------------------------------------
def test_knex_unapplied_migration_file_is_refused(node_tools: None, database_url: str,
                                                  run_job: Any, tmp_path: Path) -> None:
    source = KnexScenario("knex", converts=False).build(database_url, tmp_path / "work")
    (source / "20240104000000_later.js").write_text("exports.up = () => {};\n")
    res = _import(run_job, database_url, tmp_path, "knex", source)
    assert res.returncode == 2
    message = summary(res.stderr)["message"]
    assert "20240104000000_later.js" in message and "knex migrate:latest" in message
    assert applied_ids(database_url) == []


# -- the old tool's lock and clashing files -------------------------------------------------------
def _hold_old_lock(url: str, tool: str) -> psycopg.Connection[Any]:
    """Take the lock the way the old tool does, on a connection of its own."""
    conn = psycopg.connect(url, autocommit=True, application_name=f"{tool}-cli")
    db = url.rsplit("/", 1)[1]
    keys = {
        "prisma": 72707369,  # prisma-engines postgres flavour
        "node-pg-migrate": 7241865325823964,  # PG_MIGRATE_LOCK_ID
        # golang-migrate's CLI: database name from the URL path, then schema and table.
        "golang-migrate": advisory_lock_id("/" + db, "public", "schema_migrations"),
        "flyway": 0x466C79776179 + flyway.java_string_hash('"public"."flyway_schema_history"'),
    }
    if tool == "knex":
        conn.execute("UPDATE knex_migrations_lock SET is_locked = 1")
    else:
        conn.execute("SELECT pg_advisory_lock(%s)", (keys[tool],))
    return conn


@pytest.mark.parametrize("tool", ["prisma", "flyway", "golang-migrate", "node-pg-migrate",
                                  "knex"])
def test_import_refuses_while_the_old_tools_lock_is_held(
        node_tools: None, tool: str, database_url: str, run_job: Any, tmp_path: Path) -> None:
    from tests.adopt.scenarios import SCENARIOS

    scenario = next(s for s in SCENARIOS if s.tool == tool)
    source = scenario.build(database_url, tmp_path / "work")
    holder = _hold_old_lock(database_url, tool)
    try:
        res = _import(run_job, database_url, tmp_path, tool, source)
        assert res.returncode == 4, res.stdout + res.stderr
        message = summary(res.stderr)["message"]
        assert "lock" in message and "Nothing was imported" in message
        if tool != "knex":
            assert f"application_name='{tool}-cli'" in message
        assert applied_ids(database_url) == [] and not (tmp_path / "out").exists()
    finally:
        if tool == "knex":
            holder.execute("UPDATE knex_migrations_lock SET is_locked = 0")
        holder.close()
    res = _import(run_job, database_url, tmp_path, tool, source)
    assert res.returncode == 0, res.stdout + res.stderr


def test_import_into_a_directory_with_clashing_migrations_is_refused(
        database_url: str, run_job: Any, tmp_path: Path) -> None:
    source = GolangMigrateScenario("golang-migrate").build(database_url, tmp_path / "work")
    _write(tmp_path / "out", {"0001_something_else.sql": "SELECT 1;\n"})
    res = _import(run_job, database_url, tmp_path, "golang-migrate", source)
    assert res.returncode == 2
    assert "clash" in summary(res.stderr)["message"]
    assert applied_ids(database_url) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0001_something_else.sql"]


def test_import_on_a_second_environment_only_marks(pg_server: Any, database_url: str,
                                                   run_job: Any, tmp_path: Path) -> None:
    other = pg_server.create_database()
    try:
        scenario = GolangMigrateScenario("golang-migrate")
        first = scenario.build(database_url, tmp_path / "a")
        second = scenario.build(other, tmp_path / "b")
        execute(other, "UPDATE schema_migrations SET version = 2")  # this one is behind
        assert _import(run_job, database_url, tmp_path, "golang-migrate", first).returncode == 0
        files = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
        res = _import(run_job, other, tmp_path, "golang-migrate", second)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "already written, identical" in res.stdout
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == files
        assert applied_ids(other) == ["0001_init", "0002_add_note"]
        # Importing again is a no-op, not an error.
        assert _import(run_job, other, tmp_path, "golang-migrate", second).returncode == 0
    finally:
        pg_server.drop_database(other)


def test_import_refuses_while_a_real_knex_run_holds_its_lock_inside_its_transaction(
        node_tools: None, database_url: str, run_job: Any, tmp_path: Path) -> None:
    """knex locks by updating knex_migrations_lock inside the batch's transaction: the committed
    row still says 0 while it runs, so the import must see the row lock itself."""
    import os
    import signal
    import subprocess

    from tests.adopt.helpers import TOOLS, node_tool
    from tests.core.helpers import backend_running, wait_for

    work = tmp_path / "work"
    source = KnexScenario("knex", converts=False).build(database_url, work)
    (source / "20240104000000_slow.js").write_text(
        "exports.up = (knex) => knex.raw('SELECT pg_sleep(120)');\n"
        "exports.down = () => {};\n")
    knex = subprocess.Popen(
        [str(node_tool("knex")), "migrate:latest", "--knexfile", "knexfile.js"], cwd=work,
        env={"PATH": os.environ.get("PATH", os.defpath), "NODE_PATH": str(TOOLS),
             "DATABASE_URL": database_url}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: backend_running(database_url, "pg_sleep(120)"), timeout=60)
        res = _import(run_job, database_url, tmp_path, "knex", source)
        assert res.returncode == 4, res.stdout + res.stderr
        assert "knex's migration lock" in summary(res.stderr)["message"]
        assert applied_ids(database_url) == []
    finally:
        os.killpg(knex.pid, signal.SIGKILL)
        knex.wait(timeout=30)
        execute(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()")
