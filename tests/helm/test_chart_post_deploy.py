"""postDeploy: a second Job (`run --phase post`) after the release, rendered from the same
template as the pre Job, lint-clean and schema-valid, and its command and environment migrate
a real PostgreSQL exactly as far as the post phase goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import psycopg
import pytest
from helmchart import EXISTING_SECRET, Rendered, render
from kubernetes_validate.utils import latest_version
from test_chart_runs_job import container_argv, container_env

K8S_VERSION = latest_version()
HOOK, WEIGHT, DELETE = "helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy"
ARGO_HOOK, ARGO_WAVE = "argocd.argoproj.io/hook", "argocd.argoproj.io/sync-wave"
POST = {"postDeploy": {"enabled": True}}

POST_SCENARIOS: dict[str, dict[str, Any]] = {
    "helm-hooks": {**EXISTING_SECRET, **POST},
    "argo": {**EXISTING_SECRET, **POST, "argo": {"enabled": True}},
    "plain-waves": {**EXISTING_SECRET, "hooks": {"enabled": False}, "argo": {"syncWave": -1},
                    "postDeploy": {"enabled": True, "syncWave": 1}},
    "inline-url-own-settings": {
        "database": {"url": "postgresql://shop:inline-sentinel-pw@db:5432/shop"},
        "postDeploy": {"enabled": True, "activeDeadlineSeconds": 120, "hookWeight": 5,
                       "hookDeletePolicy": "before-hook-creation",
                       "ttlSecondsAfterFinished": 3600},
    },
}


def ann(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["metadata"].get("annotations") or {})


def jobs(r: Rendered) -> dict[str, dict[str, Any]]:
    """The Jobs by phase label."""
    found = {j["metadata"]["labels"]["migrate-job/phase"]: j for j in r.of_kind("Job")}
    assert len(found) == len(r.of_kind("Job"))
    return found


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env_value(job: dict[str, Any], name: str) -> str | None:
    values = [e.get("value") for e in container_of(job).get("env", []) if e["name"] == name]
    assert len(values) <= 1, f"{name} set twice"
    return values[0] if values else None


class _OneJob(Rendered):
    """A render narrowed to one of its Jobs, for the helpers written for a single Job."""

    def __init__(self, r: Rendered, job: dict[str, Any]) -> None:
        super().__init__(r.files, [d for d in r.docs if d["kind"] != "Job"] + [job])


@pytest.mark.parametrize("scenario", sorted(POST_SCENARIOS))
def test_post_deploy_renders_lint_clean_and_schema_valid(scenario: str) -> None:
    values = POST_SCENARIOS[scenario]
    report = helm_python.lint(Path(__file__).resolve().parents[2] / "helm" / "migrate-job",
                              values, strict=True, kube_version=f"v{K8S_VERSION}.0")
    assert [m for m in report["messages"] if m["severity"] >= 2] == [] and not report["errors"]
    r = render(values)
    assert sorted(jobs(r)) == ["post", "pre"]
    for doc in r.docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_disabled_by_default_and_the_single_job_applies_everything() -> None:
    r = render(EXISTING_SECRET)
    assert sorted(jobs(r)) == ["pre"]
    assert env_value(r.job, "MIGRATE_PHASE") == "all"
    assert ann(r.job)[HOOK] == "pre-install,pre-upgrade"


def test_pre_and_post_jobs_are_hooks_of_their_own_phase() -> None:
    r = render(POST_SCENARIOS["helm-hooks"])
    pre, post = jobs(r)["pre"], jobs(r)["post"]
    assert env_value(pre, "MIGRATE_PHASE") == "pre"
    assert env_value(post, "MIGRATE_PHASE") == "post"
    assert ann(pre)[HOOK] == "pre-install,pre-upgrade"
    assert ann(post)[HOOK] == "post-install,post-upgrade"
    assert ann(post)[WEIGHT] == "0" and ann(post)[DELETE] == "before-hook-creation,hook-succeeded"
    assert pre["metadata"]["name"] == "shop-migrate-job"
    assert post["metadata"]["name"] == "shop-migrate-job-post"
    # Same command (the image's entrypoint + args), only the phase differs.
    assert container_of(pre).get("args") == container_of(post).get("args") == ["run"]
    # Helm deletes succeeded hook resources after each phase: what the Jobs use is re-created
    # for the post phase, before its Job (lower weights).
    for kind, weight in (("ServiceAccount", "-10"), ("ConfigMap", "-5")):
        a = ann(r.one(kind))
        assert a[HOOK].split(",") == ["pre-install", "pre-upgrade", "post-install", "post-upgrade"]
        assert a[WEIGHT] == weight and int(weight) < int(ann(post)[WEIGHT])


def test_post_job_shares_every_value_but_its_own() -> None:
    r = render(POST_SCENARIOS["inline-url-own-settings"])
    pre, post = jobs(r)["pre"], jobs(r)["post"]
    assert post["spec"]["activeDeadlineSeconds"] == 120
    assert pre["spec"]["activeDeadlineSeconds"] == 240
    assert post["spec"]["ttlSecondsAfterFinished"] == 3600
    assert "ttlSecondsAfterFinished" not in pre["spec"]
    assert ann(post)[WEIGHT] == "5" and ann(post)[DELETE] == "before-hook-creation"
    assert ann(pre)[WEIGHT] == "0" and ann(pre)[DELETE] == "before-hook-creation,hook-succeeded"
    # Apart from name, phase, deadline, TTL and hook annotations the two Jobs are the same.
    a, b = json.loads(json.dumps(pre)), json.loads(json.dumps(post))
    for job in (a, b):
        job["metadata"].pop("name")
        job["metadata"].pop("annotations")
        job["metadata"]["labels"].pop("migrate-job/phase")
        job["spec"].pop("activeDeadlineSeconds")
        job["spec"].pop("ttlSecondsAfterFinished", None)
        job["spec"]["template"]["metadata"]["labels"].pop("migrate-job/phase")
        c = job["spec"]["template"]["spec"]["containers"][0]
        c["env"] = [e for e in c["env"] if e["name"] != "MIGRATE_PHASE"]
    assert a == b
    secret = r.one("Secret")
    assert ann(secret)[HOOK].endswith("post-install,post-upgrade")


def test_argo_post_sync() -> None:
    r = render(POST_SCENARIOS["argo"])
    pre, post = jobs(r)["pre"], jobs(r)["post"]
    assert ann(pre)[ARGO_HOOK] == "PreSync" and ann(post)[ARGO_HOOK] == "PostSync"
    assert ann(r.one("ConfigMap"))[ARGO_HOOK] == "PreSync,PostSync"
    assert ann(r.one("ServiceAccount"))[ARGO_HOOK] == "PreSync,PostSync"


def test_plain_jobs_are_ordered_by_sync_waves_around_the_application() -> None:
    r = render(POST_SCENARIOS["plain-waves"])
    pre, post = jobs(r)["pre"], jobs(r)["post"]
    assert ann(pre)[ARGO_WAVE] == "-1" and ann(post)[ARGO_WAVE] == "1"
    assert not any(k.startswith("helm.sh/hook") for d in r.docs for k in ann(d))
    assert post["metadata"]["name"].startswith("shop-migrate-job-post-")
    assert len(post["metadata"]["name"]) <= 63


@pytest.mark.parametrize("values, message", [
    ({**EXISTING_SECRET, "hooks": {"enabled": False}, "postDeploy": {"enabled": True}},
     "postDeploy.syncWave"),
    ({**EXISTING_SECRET, "postDeploy": {"enabled": True, "activeDeadlineSeconds": 290}},
     "postDeploy.activeDeadlineSeconds (290)"),
])
def test_post_job_without_an_ordering_or_over_the_helm_timeout_is_refused(
        values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=None) as err:
        render(values)
    assert message in str(err.value)


def test_rendered_post_job_applies_only_the_post_migrations(database_url: str, run_job: Any,
                                                             tmp_path: Path) -> None:
    """The rendered pre Job's command and env apply the pre migrations and leave the post one;
    the rendered post Job's command and env then apply it."""
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_expand.sql").write_text(
        "CREATE TABLE account (id bigint PRIMARY KEY, name text, display_name text);\n")
    (mdir / "0002_contract.sql").write_text(
        "-- depends: 0001_expand\n-- phase: post\n"
        "-- migrate-job: approve DL02 \"the new version reads display_name only\"\n"
        "ALTER TABLE account DROP COLUMN name;\n")
    r = render(POST_SCENARIOS["helm-hooks"])

    def run(job: dict[str, Any]) -> dict[str, Any]:
        one = _OneJob(r, job)
        argv = container_argv(one)
        assert argv[:3] == ["tini", "--", "migrate-job"], argv
        env = container_env(one, {("shop-db", "url"): database_url})
        env["MIGRATE_MIGRATIONS_DIR"] = str(mdir)
        env["MIGRATE_TERMINATION_LOG"] = str(tmp_path / f"termination-{job['metadata']['name']}")
        done = run_job(*argv[3:], env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return dict(json.loads(Path(env["MIGRATE_TERMINATION_LOG"]).read_text()))

    def columns() -> list[str]:
        with psycopg.connect(database_url) as conn:
            return [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = "
                "'account' ORDER BY ordinal_position")]

    pre = run(jobs(r)["pre"])
    assert [a["id"] for a in pre["applied"]] == ["0001_expand"]
    assert pre["pending"] == ["0002_contract"] and pre["phase"] == "pre"
    assert columns() == ["id", "name", "display_name"]
    post = run(jobs(r)["post"])
    assert [a["id"] for a in post["applied"]] == ["0002_contract"]
    assert post["pending"] == [] and post["phase"] == "post"
    assert columns() == ["id", "display_name"]
    with psycopg.connect(database_url) as conn:
        phases = [p for (p,) in conn.execute(
            "SELECT phase FROM _migrate_job_run ORDER BY started_at_utc")]
    assert phases == ["pre", "post"]
