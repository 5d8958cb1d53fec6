# ruff: noqa: E501  (SQL cases read best on one line each)
"""Config files, reporters and the offline `lint` entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from job.safety import lint_main, load_config, render
from job.safety.rules import RULES
from tests.safety.helpers import run

DROP = '-- migrate-job: approve DL01 "audit moved to the warehouse"\nDROP TABLE audit;\n'


def _lint(
    paths: list[str], fmt: str = "text", cfg: Path | None = None, pg: int | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = lint_main(
        paths, fmt=fmt, pg_version=pg, config_dir=str(cfg or paths[0]), out=out, err=err
    )
    return code, out.getvalue(), err.getvalue()


# -- config -----------------------------------------------------------------------------------


def test_config_from_migrate_job_toml_in_a_parent_dir(tmp_path: Path) -> None:
    (tmp_path / "migrate-job.toml").write_text(
        '[safety]\nblock = ["LK01", "table-rewrite"]\nignore = ["hy01"]\nenable = ["HY07"]\npg_version = 15\n'
    )
    sub = tmp_path / "db" / "migrations"
    sub.mkdir(parents=True)
    cfg = load_config(str(sub))
    assert (
        cfg.block == {"LK01", "table-rewrite"} and cfg.ignore == {"HY01"} and cfg.enable == {"HY07"}
    )
    assert cfg.pg_version == 15 and cfg.source == str(tmp_path / "migrate-job.toml")


def test_config_from_pyproject_tool_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.migrate-job.safety]\nignore = ["HY03"]\n'
    )
    assert load_config(str(tmp_path)).ignore == {"HY03"}


def test_pyproject_without_our_table_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    cfg = load_config(str(inner))
    assert cfg.block == frozenset() and (
        cfg.source is None or not cfg.source.startswith(str(tmp_path))
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('[safety]\nblok = ["LK01"]\n', ["safety.blok", "unknown key"]),
        ('[safety]\nblock = ["LK99"]\n', ["safety.block", "LK99"]),
        ('[safety]\nignore = "HY01"\n', ["safety.ignore", "list"]),
        ("[safety]\npg_version = 'fifteen'\n", ["safety.pg_version"]),
        (
            "[safety]\nindex_name_pattern = '('\n",
            ["safety.index_name_pattern", "regular expression"],
        ),
        ("[safety\n", ["not valid TOML"]),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, content: str, words: list[str]) -> None:
    path = tmp_path / "migrate-job.toml"
    path.write_text(content)
    with pytest.raises(ValueError) as exc:
        load_config(str(tmp_path))
    assert str(path) in str(exc.value)
    for w in words:
        assert w in str(exc.value)


# -- reporters --------------------------------------------------------------------------------


def test_json_report_schema() -> None:
    report = run(DROP + "ALTER TABLE orders DROP COLUMN note;\n")
    data = json.loads(render(report, "json"))
    assert set(data) == {
        "schema",
        "pg_version",
        "pg_version_source",
        "allow_destructive",
        "files",
        "statements",
        "summary",
        "findings",
        "approvals",
        "stale_approvals",
    }
    assert data["schema"] == "migrate-job.safety/v1"
    assert set(data["summary"]) == {
        "error",
        "warning",
        "info",
        "findings",
        "blocking",
        "approved",
        "stale_approvals",
        "by_rule",
    }
    f = next(x for x in data["findings"] if x["rule"] == "DL02")
    assert set(f) == {
        "rule",
        "name",
        "category",
        "severity",
        "migration",
        "path",
        "line",
        "message",
        "safe_alternative",
        "blocking",
        "approved_by",
        "table",
        "lock",
        "rows",
        "total_bytes",
        "statement",
        "data",
    }
    assert (f["blocking"], f["line"], f["table"], f["category"]) == (True, 3, "orders", "data-loss")
    assert data["approvals"][0]["reason"] == "audit moved to the warehouse"
    assert data["summary"]["blocking"] == 1 and data["summary"]["approved"] == 1


def test_markdown_report_is_a_table_for_pull_requests() -> None:
    md = render(run("ALTER TABLE orders DROP COLUMN note; -- a | pipe\n"), "markdown")
    lines = md.splitlines()
    assert "| | Rule | Severity | Location | Finding | Safe alternative |" in lines
    row = next(line for line in lines if "`DL02`" in line)
    assert row.startswith("| ⛔ |") and "`migrations/0002_case.sql:1`" in row
    assert row.count(" | ") >= 5  # pipes inside cells are escaped, columns stay aligned
    assert "blocking finding" in md


def test_github_annotations() -> None:
    out = render(run(DROP + "CREATE INDEX i ON orders (a);\n"), "github").splitlines()
    lk01 = next(line for line in out if "LK01" in line)
    assert lk01.startswith("::warning file=migrations/0002_case.sql,line=3,title=LK01 ")
    dl01 = next(line for line in out if "DL01" in line)
    assert dl01.startswith("::error file=migrations/0002_case.sql,line=2,")
    assert "%0AApproved: audit moved to the warehouse" in dl01
    blocking = render(run("DROP TABLE audit;"), "github")
    assert "title=DL01 drop-table (blocking)::" in blocking


def test_text_report_has_locations_and_summary() -> None:
    text = render(run("DROP TABLE audit;"), "text")
    assert "migrations/0002_case.sql:1: error DL01 drop-table [BLOCKING]" in text
    last = text.rstrip().splitlines()[-1]
    assert (
        " findings (1 error" in last and "1 blocking" in last and "rules for PostgreSQL 18" in last
    )


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError):
        render(run("SELECT 1;"), "yaml")


def test_docs_list_every_rule() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "safety.md").read_text()
    missing = [r.id for r in RULES if f"| {r.id} |" not in docs]
    assert missing == []


# -- lint -------------------------------------------------------------------------------------


def _migrations(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_lint_clean_directory_exits_0(tmp_path: Path) -> None:
    d = _migrations(
        tmp_path,
        {
            "0001_init.sql": "CREATE TABLE orders (id bigint PRIMARY KEY, note text);\n",
            # Linted too, after the ups: it drops what its own up created, which is no finding.
            "0001_init.rollback.sql": "DROP TABLE orders;\n",
        },
    )
    code, out, err = _lint([str(d)])
    assert (code, err) == (0, "")
    assert "2 files" in out


def test_lint_blocking_finding_exits_6(tmp_path: Path) -> None:
    d = _migrations(tmp_path, {"0002_drop.sql": "ALTER TABLE orders DROP COLUMN note;\n"})
    code, out, _ = _lint([str(d)], fmt="github")
    assert code == 6
    assert "::error file=" in out and f"{d}/0002_drop.sql,line=1" in out


def test_lint_approved_file_exits_0(tmp_path: Path) -> None:
    d = _migrations(
        tmp_path,
        {
            "0002_drop.sql": '-- migrate-job: approve DL02 "unused since v41"\nALTER TABLE orders DROP COLUMN note;\n'
        },
    )
    assert _lint([str(d)])[0] == 0


def test_lint_reads_transactional_directive(tmp_path: Path) -> None:
    d = _migrations(
        tmp_path,
        {
            "0003_idx.sql": "-- transactional: false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON orders (a);\n",
            "0004_idx.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON orders (a);\n",
        },
    )
    code, out, _ = _lint([str(d)], fmt="json")
    data = json.loads(out)
    assert code == 6
    assert [(f["migration"], f["rule"]) for f in data["findings"] if f["rule"] == "TX01"] == [
        ("0004_idx", "TX01")
    ]


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "github"])
def test_lint_every_format(tmp_path: Path, fmt: str) -> None:
    d = _migrations(tmp_path, {"0001.sql": "CREATE INDEX i ON orders (a);\n"})
    code, out, _ = _lint([str(d)], fmt=fmt)
    assert code == 0 and "LK01" in out


def test_lint_pg_version_flag_gates_rules(tmp_path: Path) -> None:
    d = _migrations(
        tmp_path, {"0001.sql": "ALTER TABLE orders ADD COLUMN ts timestamptz DEFAULT now();\n"}
    )
    assert "RW02" in _lint([str(d)], pg=10)[1]
    out = _lint([str(d)], pg=16)[1]
    assert "RW02" not in out and "rules for PostgreSQL 16" in out


def test_lint_bad_input_exits_2(tmp_path: Path) -> None:
    d = _migrations(tmp_path, {"0001.sql": "SELECT 1;\n"})
    code, _, err = _lint([str(tmp_path / "nope")], cfg=tmp_path)
    assert code == 2 and "nope" in err
    assert _lint([str(d)], fmt="xml")[0] == 2
    (tmp_path / "migrate-job.toml").write_text("[safety]\nbogus = 1\n")
    code, _, err = _lint([str(d)], cfg=tmp_path)
    assert code == 2 and "safety.bogus" in err
    assert (
        lint_main(
            [],
            fmt="text",
            pg_version=None,
            config_dir=str(tmp_path),
            out=io.StringIO(),
            err=io.StringIO(),
        )
        == 2
    )


def test_lint_unparsable_and_meta_commands_do_not_crash(tmp_path: Path) -> None:
    d = _migrations(tmp_path, {"0001.sql": "\\set ON_ERROR_STOP 1\nSELEC 1;\nSELECT 'open\n"})
    code, out, _ = _lint([str(d)])
    assert code == 6
    assert "AN02" in out and "could not parse: line 2" in out
