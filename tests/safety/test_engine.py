# ruff: noqa: E501  (SQL cases read best on one line each)
"""Approvals, blocking decisions, lines, version gating and robustness of the gate."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from job.safety import SafetyConfig, SqlFile, analyze
from job.safety.context import Context
from job.safety.parser import Statement
from job.safety.rules import RULES, Hit, Rule
from tests.safety.helpers import rules_fired, run


def test_unapproved_data_loss_blocks() -> None:
    report = run("ALTER TABLE orders DROP COLUMN note;")
    (dl02,) = [f for f in report.findings if f.rule == "DL02"]
    assert dl02.blocking and dl02.approved_by is None and dl02.severity == "error"
    assert report.blocking() == [dl02]


def test_approval_directive_unblocks_with_its_reason() -> None:
    sql = '-- migrate-job: approve DL02 "column unused since v41"\nALTER TABLE orders DROP COLUMN note;\n'
    report = run(sql)
    (dl02,) = [f for f in report.findings if f.rule == "DL02"]
    assert not dl02.blocking
    assert dl02.approved_by == "column unused since v41"
    assert report.blocking() == []
    assert [(a.rule, a.reason, a.line) for a in report.approvals] == [
        ("DL02", "column unused since v41", 1)
    ]
    assert report.stale_approvals == []


def test_approval_only_covers_the_named_rule() -> None:
    sql = '-- migrate-job: approve DL02 "ok"\nALTER TABLE orders DROP COLUMN note;\nDROP TABLE audit;\n'
    report = run(sql)
    assert [f.rule for f in report.blocking()] == ["DL01"]


def test_approval_for_a_rule_that_does_not_fire_is_stale() -> None:
    sql = '-- migrate-job: approve DL01 "we used to drop a table here"\nALTER TABLE orders ADD COLUMN b bigint;\n'
    report = run(sql)
    assert [(a.rule, a.line) for a in report.stale_approvals] == [("DL01", 1)]
    assert report.approvals == []
    assert report.to_json()["summary"]["stale_approvals"] == 1


def test_approval_in_one_file_does_not_approve_another() -> None:
    files = [
        SqlFile(
            "0001_a",
            "m/0001_a.sql",
            '-- migrate-job: approve DL01 "old table"\nDROP TABLE a;',
            True,
        ),
        SqlFile("0002_b", "m/0002_b.sql", "DROP TABLE b;", True),
    ]
    report = analyze(files, server_version_num=None, stats=None, config=SafetyConfig())
    assert [(f.migration, f.blocking) for f in report.findings if f.rule == "DL01"] == [
        ("0001_a", False),
        ("0002_b", True),
    ]


def test_malformed_approval_is_reported_and_approves_nothing() -> None:
    report = run(
        "-- migrate-job: approve DL02 unquoted reason\nALTER TABLE orders DROP COLUMN note;"
    )
    assert "AN04" in rules_fired(report)
    assert [f.rule for f in report.blocking()] == ["DL02"]


def test_allow_destructive_approves_data_loss_but_not_tx01() -> None:
    sql = "DROP TABLE audit;\nCREATE INDEX CONCURRENTLY i ON orders (a);"
    report = run(sql, allow_destructive=True)
    dl01 = next(f for f in report.findings if f.rule == "DL01")
    assert not dl01.blocking and dl01.approved_by == "MIGRATE_ALLOW_DESTRUCTIVE=true"
    assert [f.rule for f in report.blocking()] == ["TX01"]
    assert report.to_json()["allow_destructive"] is True


def test_findings_carry_file_and_line() -> None:
    sql = (
        "-- depends: 0001_prelude\n"
        "\n"
        "ALTER TABLE orders\n"
        "  ADD COLUMN b bigint;\n"
        "/* a block comment */\n"
        "ALTER TABLE orders\n"
        "    DROP COLUMN note;\n"
    )
    report = run(sql)
    dl02 = next(f for f in report.findings if f.rule == "DL02")
    assert (dl02.path, dl02.line, dl02.migration) == ("migrations/0002_case.sql", 6, "0002_case")
    bc17 = next(f for f in report.findings if f.rule == "BC17")
    assert bc17.line == 3
    assert "DROP COLUMN note" in dl02.statement


def test_unparsable_statement_is_a_finding_and_the_rest_is_still_analysed() -> None:
    sql = "SELECT 1;\nALTER TABLE orders ADD COLUM b int;\nDROP TABLE audit;\n"
    report = run(sql)
    an01 = next(f for f in report.findings if f.rule == "AN01")
    assert an01.line == 2 and an01.message.startswith("could not parse: line 2")
    assert an01.blocking
    assert "DL01" in rules_fired(report)


def test_meta_commands_are_findings_with_their_line() -> None:
    sql = "SELECT 1;\n\\connect other\nDROP TABLE audit;\n  \\gset\n"
    report = run(sql)
    assert sorted(f.line for f in report.findings if f.rule == "AN02") == [2, 4]
    assert "DL01" in rules_fired(report)


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "-- only a comment\n",
        "SELECT 'unterminated",
        "/* unterminated",
        "SELECT $$ unterminated",
        ";;;",
        "\\",
        "CREATE TABLE (",
        "ALTER TABLE ONLY;",
        "\x00",
        "SELECT 'ünïcödé' || \"ïdent\";",
    ],
)
def test_garbage_never_crashes(sql: str) -> None:
    report = run(sql)
    assert all(f.rule.startswith("AN") for f in report.findings), report.findings


def test_version_gates_follow_the_server() -> None:
    now_default = "ALTER TABLE orders ADD COLUMN ts timestamptz DEFAULT now();"
    assert "RW02" in rules_fired(run(now_default, pg=10))
    assert "RW02" not in rules_fired(run(now_default, pg=11))
    add_value = "ALTER TYPE mood ADD VALUE 'meh';"
    assert "TX01" in rules_fired(run(add_value, pg=11))
    assert "TX01" not in rules_fired(run(add_value, pg=12))


def test_unknown_version_is_assumed_and_reported_as_such() -> None:
    report = run("SELECT 1;", pg=None)
    data = report.to_json()
    assert data["pg_version_source"] == "assumed" and data["pg_version"] == 140000
    report = run("SELECT 1;", pg=None, config=SafetyConfig(pg_version=16))
    assert (report.pg_version, report.pg_version_source) == (160000, "setting")


def test_cic_on_buggy_14_minor_is_flagged_only_when_the_server_says_so() -> None:
    files = [SqlFile("1", "1.sql", "CREATE INDEX CONCURRENTLY i ON orders (a);", False)]
    bad = analyze(files, server_version_num=140002, stats=None, config=SafetyConfig())
    fixed = analyze(files, server_version_num=140004, stats=None, config=SafetyConfig())
    assert "LK01" in {f.rule for f in bad.findings}
    assert "LK01" not in {f.rule for f in fixed.findings}


def test_undecidable_findings_say_so() -> None:
    report = run("ALTER TABLE orders ALTER COLUMN a TYPE text;")
    rw01 = next(f for f in report.findings if f.rule == "RW01")
    assert "cannot be decided statically" in rw01.message
    report = run("ALTER TABLE orders ADD COLUMN x int DEFAULT my_func();")
    assert (
        "cannot be decided statically"
        in next(f for f in report.findings if f.rule == "RW02").message
    )


def test_config_promotes_and_silences() -> None:
    sql = "CREATE INDEX i ON orders (a);\nCREATE TABLE t (id int);"
    plain = run(sql, config=SafetyConfig())
    assert plain.blocking() == [] and "HY01" in rules_fired(plain)
    strict = run(sql, config=SafetyConfig(block=frozenset({"LK01"}), ignore=frozenset({"hygiene"})))
    assert [f.rule for f in strict.blocking()] == ["LK01"]
    assert not any(f.category == "hygiene" for f in strict.findings)


def test_opt_in_rules_are_off_by_default() -> None:
    assert "HY07" not in rules_fired(run("CREATE TABLE t (a bigint);", config=SafetyConfig()))
    assert "HY07" in rules_fired(
        run("CREATE TABLE t (a bigint);", config=SafetyConfig(enable=frozenset({"HY07"})))
    )


class _Broken(Rule):
    id, name, category, severity = "AN05", "analyser-error", "analysis", "error"
    summary = safe_alternative = "test"

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        raise RuntimeError("boom")


def test_a_rule_bug_becomes_a_finding_not_a_crash() -> None:
    RULES.append(_Broken())
    try:
        report = run("SELECT 1;")
    finally:
        RULES.pop()
    an05 = [f for f in report.findings if f.rule == "AN05"]
    assert an05 and "boom" in an05[0].message


def test_tables_created_earlier_in_the_migration_are_exempt_only_when_unconditional() -> None:
    created = "CREATE TABLE t (a bigint);\nCREATE INDEX t_a ON t (a);"
    conditional = "CREATE TABLE IF NOT EXISTS t (a bigint);\nCREATE INDEX t_a ON t (a);"
    assert "LK01" not in rules_fired(run(created))
    assert "LK01" in rules_fired(run(conditional))


def test_importing_the_gate_does_not_load_the_parser() -> None:
    code = "import sys, job.safety; assert 'postgast' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_parser_reports_the_postgresql_18_grammar() -> None:
    from job.safety.parser import parser_version

    assert parser_version().startswith("18")
