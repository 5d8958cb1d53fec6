"""`migrate-job lint --format sarif`: valid SARIF 2.1.0 (checked against the OASIS schema vendored
in tests/release/data), one rule per catalogue rule with its help, one result per finding with
a repository-relative file, its line and level, approvals as suppressions; the exit code is the
gate's, as for every other format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

DATA = Path(__file__).parent / "data"

MIGRATIONS = {
    "0001_create_accounts.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY, email text);\n",
    "0002_drop_legacy.sql": "-- depends: 0001_create_accounts\nDROP TABLE legacy_orders;\n",
    "0003_drop_column.sql": (
        "-- depends: 0002_drop_legacy\n"
        '-- migrate-job: approve DL02 "column unused since v41"\n'
        "ALTER TABLE invoices DROP COLUMN fax_number;\n"
    ),
    "0004_index.sql": (
        "-- depends: 0003_drop_column\n"
        '-- migrate-job: approve DL01 "left over from an old review"\n'
        "CREATE INDEX invoices_customer_idx ON invoices (customer_id);\n"
    ),
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "db" / "migrations").mkdir(parents=True)
    for name, text in MIGRATIONS.items():
        (tmp_path / "db" / "migrations" / name).write_text(text)
    return tmp_path


def sarif(run_job: Any, *paths: str, cwd: Path) -> tuple[int, dict[str, Any]]:
    proc = run_job("lint", "--format", "sarif", *paths, cwd=str(cwd))
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def results_by_rule(log: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in log["runs"][0]["results"]:
        out.setdefault(r["ruleId"], []).append(r)
    return out


def test_sarif_is_valid_against_the_oasis_2_1_0_schema(
        run_job: Any, project: Path, validator: jsonschema.Draft4Validator) -> None:
    code, log = sarif(run_job, "db/migrations", cwd=project)
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    assert log["version"] == "2.1.0"
    assert code == 6  # the blocking DROP TABLE: the same gate as every other format


def test_the_schema_check_rejects_a_broken_log(validator: jsonschema.Draft4Validator) -> None:
    # Proves the vendored schema bites: a level SARIF does not define, a result without message.
    broken = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                           "results": [{"ruleId": "DL01", "level": "fatal"}]}]}
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("fatal" in m for m in messages), messages
    assert any("message" in m for m in messages), messages


def test_every_catalogue_rule_is_described_with_its_help(run_job: Any, project: Path) -> None:
    from job.safety.rules import RULES

    _, log = sarif(run_job, "db/migrations", cwd=project)
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "migrate-job"
    from job import __version__
    assert driver["version"] == __version__
    rules = {r["id"]: r for r in driver["rules"]}
    assert [r["id"] for r in driver["rules"]] == [r.id for r in RULES] + ["stale-approval"]
    for rule in RULES:
        entry = rules[rule.id]
        assert entry["name"] == rule.name
        assert entry["shortDescription"]["text"] == rule.summary
        assert rule.safe_alternative in entry["help"]["text"]
        assert rule.safe_alternative in entry["help"]["markdown"]
        assert entry["properties"]["category"] == rule.category
        assert entry["defaultConfiguration"]["enabled"] is rule.default_enabled
        expected = "error" if rule.blocking else {"info": "note"}.get(rule.severity, rule.severity)
        assert entry["defaultConfiguration"]["level"] == expected, rule.id
    assert rules["DL01"]["helpUri"].startswith("https://github.com/migrate-job/migrate-job/blob/v")


def test_results_carry_relative_file_line_and_level(run_job: Any, project: Path) -> None:
    _, log = sarif(run_job, "db/migrations", cwd=project)
    by_rule = results_by_rule(log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]

    (drop,) = by_rule["DL01"]
    assert drop["level"] == "error"
    assert drop["properties"]["blocking"] is True
    assert "legacy_orders" in drop["message"]["text"]
    loc = drop["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "db/migrations/0002_drop_legacy.sql",
                                       "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {"startLine": 2}
    assert rules[drop["ruleIndex"]]["id"] == "DL01"

    (index,) = by_rule["LK01"]
    assert index["level"] == "warning"
    assert index["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
    assert all(r["level"] == "note" for r in by_rule["LK18"])  # info findings are notes
    base = log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base == project.resolve().as_uri() + "/"


def test_approved_finding_is_a_suppressed_result_with_the_reason(
        run_job: Any, project: Path) -> None:
    _, log = sarif(run_job, "db/migrations", cwd=project)
    (approved,) = results_by_rule(log)["DL02"]
    assert approved["suppressions"] == [{"kind": "inSource", "status": "accepted",
                                         "justification": "column unused since v41"}]
    assert approved["properties"]["blocking"] is False
    assert "suppressions" not in results_by_rule(log)["DL01"][0]


def test_deploy_wide_approval_is_an_external_suppression(
        project: Path, validator: jsonschema.Draft4Validator) -> None:
    # `lint` ignores the deploy-time switch; `plan`/`run` apply it: the documented Python
    # interface (docs/safety.md) gives the report they would render.
    from job.safety import SafetyConfig, SqlFile, analyze, render

    files = [SqlFile(id=p.stem, path=str(p), text=p.read_text(), transactional=True)
             for p in sorted((project / "db" / "migrations").glob("*.sql"))]
    report = analyze(files, server_version_num=None, stats=None, config=SafetyConfig(),
                     allow_destructive=True)
    assert not report.blocking()
    log = json.loads(render(report, "sarif"))
    assert not list(validator.iter_errors(log))
    (drop,) = results_by_rule(log)["DL01"]
    assert drop["suppressions"][0]["kind"] == "external"
    assert "MIGRATE_ALLOW_DESTRUCTIVE" in drop["suppressions"][0]["justification"]
    assert drop["level"] == "error"  # still an error-severity finding, only approved


def test_stale_approval_is_reported_on_its_line(run_job: Any, project: Path) -> None:
    _, log = sarif(run_job, "db/migrations", cwd=project)
    (stale,) = results_by_rule(log)["stale-approval"]
    loc = stale["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "db/migrations/0004_index.sql"
    assert loc["region"]["startLine"] == 2
    assert "DL01" in stale["message"]["text"]


def test_absolute_paths_inside_the_checkout_become_relative_uris(
        run_job: Any, project: Path) -> None:
    target = project / "db" / "migrations" / "0002_drop_legacy.sql"
    _, log = sarif(run_job, str(target.resolve()), cwd=project)
    (drop,) = results_by_rule(log)["DL01"]
    art = drop["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": "db/migrations/0002_drop_legacy.sql", "uriBaseId": "%SRCROOT%"}


def test_files_outside_the_working_directory_get_absolute_file_uris(
        run_job: Any, project: Path, tmp_path_factory: pytest.TempPathFactory,
        validator: jsonschema.Draft4Validator) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _, log = sarif(run_job, str(project / "db" / "migrations" / "0002_drop_legacy.sql"),
                   cwd=elsewhere)
    (drop,) = results_by_rule(log)["DL01"]
    art = drop["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": (project / "db/migrations/0002_drop_legacy.sql").resolve().as_uri()}
    assert not list(validator.iter_errors(log))


def test_clean_migrations_give_an_empty_result_list_and_exit_0(
        run_job: Any, tmp_path: Path, validator: jsonschema.Draft4Validator) -> None:
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (id bigint PRIMARY KEY);\n")
    code, log = sarif(run_job, "0001_t.sql", cwd=tmp_path)
    assert code == 0
    assert log["runs"][0]["results"] == []
    assert not list(validator.iter_errors(log))


def test_sarif_stdout_holds_nothing_but_the_log(run_job: Any, project: Path) -> None:
    # upload-sarif reads the file the step redirected stdout to: logs must stay on stderr.
    proc = run_job("lint", "--format", "sarif", "db/migrations", cwd=str(project))
    json.loads(proc.stdout)
    assert "migrate.summary" in proc.stderr
