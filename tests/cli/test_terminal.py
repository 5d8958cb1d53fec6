"""What a person sees in a terminal: the CLI runs on a real pseudo-terminal (stdin, stdout and
stderr all TTYs, TERM and a 200-column window set), as in a shell.

Every everyday flow (run, failure, refusal, status, plan, rollback) must stay readable: no line
over 160 characters, no Python repr, the way out of a refusal shown where it is seen.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.terminal import Screen, run_in_pty
from tests.core.helpers import applied_ids, env_for, query, write

APPROVAL = '-- migrate-job: approve DL02 "reason"'


def assert_readable(screen: Screen) -> None:
    assert screen.lines, "nothing was shown"
    for line in screen.lines:
        assert len(line) <= 160, f"line of {len(line)} characters:\n{line}"
    text = screen.text
    for repr_mark in ("{'", "None", "Traceback", '{"'):
        assert repr_mark not in text, f"{repr_mark!r} on screen:\n{text}"


def _two(mdir: Path) -> None:
    write(mdir, "0001_create_customers.sql", "CREATE TABLE customers (id bigint PRIMARY KEY);\n")
    write(mdir, "0001_create_customers.rollback.sql", "DROP TABLE customers;\n")
    write(mdir, "0002_create_orders.sql",
          "-- depends: 0001_create_customers\n"
          "CREATE TABLE orders (id bigint PRIMARY KEY,\n"
          "  customer_id bigint REFERENCES customers (id));\n")
    write(mdir, "0002_create_orders.rollback.sql", "DROP TABLE orders;\n")


def test_run_shows_one_line_per_migration_and_a_summary_block(database_url, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    screen = run_in_pty("run", env=env_for(database_url, mdir))
    assert screen.code == 0, screen.raw
    assert_readable(screen)
    lines = screen.lines
    assert any(re.fullmatch(r"applying 0001_create_customers \.\.\. ok \(\d+ ms\)", ln)
               for ln in lines), screen.text
    assert any(re.fullmatch(r"applying 0002_create_orders \.\.\. ok \(\d+ ms\)", ln)
               for ln in lines), screen.text
    head = next(i for i, ln in enumerate(lines) if ln.startswith("run: applied 2 migrations in"))
    block = "\n".join(lines[head:])
    assert "(exit 0)" in lines[head]
    assert "database  postgres@" in block
    assert "0001_create_customers" in block and "0002_create_orders" in block
    assert "backup    none taken" in block
    # No JSON and no key=value wall on a terminal.
    assert "migration.applied" not in screen.text and "duration_s=" not in screen.text


def test_failed_migration_is_a_short_block_that_starts_with_what_to_do(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_ok.sql", "CREATE TABLE ok (id bigint);\n")
    bad = write(mdir, "0002_bad.sql",
                "-- a comment\nCREATE TABLE half (id bigint);\n\nINSERT INTO half\n"
                "  SELECT * FROM\n    no_such_table;\n")
    screen = run_in_pty("run", env=env_for(database_url, mdir))
    assert screen.code == 8
    assert_readable(screen)
    lines = screen.lines
    assert "applying 0002_bad ... failed" in lines
    head = lines.index("✗ run: migration 0002_bad failed (exit 8)")
    assert lines[head + 1].startswith("  next:    fix ")
    block = "\n".join(lines[head:head + 12])
    assert re.search(rf"^  at:\s+{re.escape(str(bad))}:6$", block, re.M), block
    assert re.search(r"^\s+6 \|     no_such_table;$", block, re.M), block  # the SQL line itself
    assert re.search(r'^  error:\s+\[42P01\] relation "no_such_table" does not exist$', block,
                     re.M), block
    assert re.search(r"^  sql:\s+INSERT INTO half SELECT \* FROM no_such_table$", block, re.M)
    assert applied_ids(database_url) == ["0001_ok"]


def test_refused_run_shows_the_approval_line_near_the_start(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint, legacy text);\nINSERT INTO t VALUES (1, 'x');\n")
    assert run_in_pty("run", env=env_for(database_url, mdir)).code == 0
    write(mdir, "0002_drop.sql", "ALTER TABLE t DROP COLUMN legacy;\n")
    screen = run_in_pty("run", env=env_for(database_url, mdir))
    assert screen.code == 6
    assert_readable(screen)
    lines = screen.lines
    head = lines.index("✗ run: refused by the safety gate (exit 6)")
    assert lines[head + 1].startswith("  next:    after review, add to ") and "0002_drop.sql" in (
        lines[head + 1])
    assert lines[head + 2].strip() == APPROVAL
    assert any("DL02 at " in ln and "0002_drop.sql:1" in ln for ln in lines[head:])
    assert query(database_url, "SELECT count(*) FROM t")[0][0] == 1  # nothing changed


def test_plan_names_database_phase_backup_statements_and_the_approval_line(database_url,
                                                                            tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint, legacy text);\n"
          "INSERT INTO t VALUES (1, 'x');\n")  # data in the column: the drop blocks
    assert run_in_pty("run", env=env_for(database_url, mdir)).code == 0
    write(mdir, "0002_drop.sql", "CREATE TABLE audit (id bigint);\n"
          "ALTER TABLE t\n  DROP COLUMN legacy;\n")
    screen = run_in_pty("plan", env=env_for(database_url, mdir))
    assert screen.code == 6
    assert_readable(screen)
    text = screen.text
    db = database_url.rsplit("/", 1)[1]
    assert re.search(rf"^plan for    postgres@.*/{db}$", text, re.M), text
    assert "\nphase       all\n" in text
    assert "\nbackup      none (set MIGRATE_BACKUP" in text
    assert "would apply 0002_drop  (pre, transactional, 2 statements, no rollback script)" in text
    assert "  line 1    CREATE TABLE audit (id bigint)" in text
    assert "  line 2    ALTER TABLE t DROP COLUMN legacy" in text
    assert f"add  {APPROVAL}  to {mdir}/0002_drop.sql" in text
    assert "run would refuse: 1 unapproved dangerous finding(s) (exit 6)" in text


def test_plan_verbose_shows_each_statement_in_full(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (\n  id bigint,\n  name text\n);\n")
    screen = run_in_pty("plan", "--verbose", "--backup", "file:///srv/backups",
                        env=env_for(database_url, mdir))
    assert screen.code == 0, screen.raw
    assert_readable(screen)
    lines = screen.lines
    first = lines.index("  line 1    CREATE TABLE t (")
    assert lines[first + 1:first + 4] == ["              id bigint,", "              name text",
                                          "            )"]
    assert "backup      file:///srv/backups, taken before applying and verified" in lines


def test_status_is_a_table_with_a_header_naming_the_time_zone(database_url, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    assert run_in_pty("run", env=env_for(database_url, mdir)).code == 0
    write(mdir, "0003_a_much_longer_migration_name.sql", "SELECT 1;\n")
    screen = run_in_pty("status", env=env_for(database_url, mdir))
    assert screen.code == 10
    assert_readable(screen)
    lines = screen.lines
    header = next(ln for ln in lines if ln.startswith("STATE"))
    assert "APPLIED AT (UTC)" in header and "MIGRATION" in header
    rows = [ln for ln in lines if ln.startswith(("applied", "pending"))]
    assert [r.split()[1] for r in rows] == ["0001_create_customers", "0002_create_orders",
                                            "0003_a_much_longer_migration_name"]
    # Aligned: the time column starts at the same place in every row and the header.
    col = header.index("APPLIED AT")
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|-", r[col:]) for r in rows), lines
    assert "2 applied, 1 pending, 0 changed, 0 unknown" in lines


def test_rollback_output_is_readable(database_url, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    assert run_in_pty("run", env=env_for(database_url, mdir)).code == 0
    screen = run_in_pty("rollback", "--yes", env=env_for(database_url, mdir))
    assert screen.code == 0, screen.raw
    assert_readable(screen)
    assert any(re.fullmatch(r"rolling back 0002_create_orders \.\.\. ok \(\d+ ms\)", ln)
               for ln in screen.lines), screen.text
    assert any(ln.startswith("  rolled back 0002_create_orders") for ln in screen.lines)
    assert applied_ids(database_url) == ["0001_create_customers"]


def test_typo_in_a_variable_is_a_warning_naming_the_known_one(database_url, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    screen = run_in_pty("status", env={**env_for(database_url, mdir), "MIGRATE_LOCKWAIT": "5m"})
    assert screen.lines[0] == ("warning: MIGRATE_LOCKWAIT is not a migrate-job setting; did you "
                               "mean MIGRATE_LOCK_WAIT?")


def test_configuration_error_is_a_short_block_listing_every_problem():
    screen = run_in_pty("run", env={"MIGRATE_DATABASE_URL": "postgresql://x@h/db",
                                    "MIGRATE_LOCK_WAIT": "soon", "MIGRATE_LOCK_RETRIES": "-1"})
    assert screen.code == 2
    assert_readable(screen)
    assert screen.lines[0] == "✗ configuration error (exit 2): nothing was done"
    assert screen.lines[1].startswith("  next:")
    assert any("MIGRATE_LOCK_WAIT='soon' is not a duration" in ln for ln in screen.lines)
    assert any("MIGRATE_LOCK_RETRIES='-1' must be at least 0" in ln for ln in screen.lines)
