"""Helm hooks, plain Job (hashed name), Argo CD PreSync, and use as a subchart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
from helmchart import SCENARIOS, render, vendor_umbrella

ARGO_HOOK = "argocd.argoproj.io/hook"
ARGO_DELETE = "argocd.argoproj.io/hook-delete-policy"
ARGO_WAVE = "argocd.argoproj.io/sync-wave"


def ann_of(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["metadata"].get("annotations") or {})


def with_image_tag(tag: str, base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "image": {"tag": tag}}


# --- plain Job -----------------------------------------------------------------------------


def test_hooks_off_renders_plain_resources() -> None:
    r = render(SCENARIOS["hooks-off"])
    for doc in r.docs:
        assert not any(k.startswith(("helm.sh/hook", "argocd.argoproj.io/"))
                       for k in ann_of(doc)), doc["kind"]
    assert r.job["spec"]["backoffLimit"] == 0
    assert r.pod_spec["restartPolicy"] == "Never"


def test_plain_job_name_carries_a_hash_of_image_and_values() -> None:
    base = SCENARIOS["hooks-off"]
    name = render(base).job["metadata"]["name"]
    assert re.fullmatch(r"shop-migrate-job-[0-9a-f]{8}", name)
    # Same inputs, same Job: Argo CD / Flux see no change and nothing re-runs.
    assert render(base).job["metadata"]["name"] == name
    # A new image or a changed setting is a new Job (a Job's pod template is immutable).
    assert render(with_image_tag("0.2.0", base)).job["metadata"]["name"] != name
    changed = {**base, "settings": {"lockTimeout": "10s"}}
    assert render(changed).job["metadata"]["name"] != name
    # Other resources keep stable names so the Job's references hold.
    assert render(with_image_tag("0.2.0", base)).one("ConfigMap")["metadata"]["name"] == \
        "shop-migrate-job"


def test_plain_job_name_fits_the_63_character_label_limit() -> None:
    values = {**SCENARIOS["hooks-off"], "fullnameOverride": "x" * 63}
    name = render(values).job["metadata"]["name"]
    assert len(name) == 63 and re.fullmatch(r"x{54}-[0-9a-f]{8}", name)


def test_hook_mode_job_name_is_stable_across_upgrades() -> None:
    base = SCENARIOS["existing-secret-env"]
    assert render(base).job["metadata"]["name"] == "shop-migrate-job"
    assert render(with_image_tag("0.2.0", base)).job["metadata"]["name"] == "shop-migrate-job"


def test_plain_job_with_argo_sync_waves() -> None:
    r = render(SCENARIOS["hooks-off-argo-waves"])
    for doc in r.docs:
        ann = ann_of(doc)
        assert ann[ARGO_WAVE] == "-1", doc["kind"]
        assert ARGO_HOOK not in ann


def test_notes_tell_how_to_read_a_failed_run() -> None:
    notes = render(SCENARIOS["hooks-off"]).notes
    name = render(SCENARIOS["hooks-off"]).job["metadata"]["name"]
    assert f"kubectl -n shop logs job/{name}" in notes
    assert "state.terminated.message" in notes
    assert "kubectl -n shop logs job/shop-migrate-job" in render(SCENARIOS["argo"]).notes


# --- Argo CD ---------------------------------------------------------------------------------


def test_argo_presync_hooks_on_the_job_and_everything_it_needs() -> None:
    r = render(SCENARIOS["argo"])
    waves = {}
    for doc in r.docs:
        ann = ann_of(doc)
        assert ann[ARGO_HOOK] == "PreSync", doc["kind"]
        assert ann[ARGO_DELETE] == "BeforeHookCreation,HookSucceeded"
        waves[doc["kind"]] = int(ann[ARGO_WAVE])
    assert waves["ServiceAccount"] < waves["ConfigMap"] < waves["Job"]


def test_argo_without_helm_hooks() -> None:
    values = {**SCENARIOS["argo"], "hooks": {"enabled": False}}
    r = render(values)
    assert ann_of(r.job)[ARGO_HOOK] == "PreSync"
    assert "helm.sh/hook" not in ann_of(r.job)
    assert re.fullmatch(r"shop-migrate-job-[0-9a-f]{8}", r.job["metadata"]["name"])


def test_argo_off_by_default() -> None:
    r = render(SCENARIOS["existing-secret-env"])
    for doc in r.docs:
        assert not any(k.startswith("argocd.argoproj.io/") for k in ann_of(doc))


# --- as a subchart ---------------------------------------------------------------------------


def test_subchart_hook_runs_before_the_application(tmp_path: Path) -> None:
    umbrella = vendor_umbrella(tmp_path)
    r = render(None, chart_dir=umbrella)
    deployment = r.one("Deployment")
    # The app is an ordinary resource: Helm applies it only after every pre-upgrade hook
    # (the migration Job included) succeeded.
    assert not any(k.startswith("helm.sh/hook") for k in ann_of(deployment))
    assert ann_of(r.job)["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert r.job["metadata"]["name"] == "shop-migrate-job"
    assert r.container["image"] == "ghcr.io/example/shop-migrations:1.4.0"
    env = {e["name"]: e for e in r.container["env"]}
    assert env["MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "shop-db"


def test_subchart_can_be_disabled_by_the_parent(tmp_path: Path) -> None:
    umbrella = vendor_umbrella(tmp_path)
    r = render({"migrate-job": {"enabled": False}}, chart_dir=umbrella)
    assert [d["kind"] for d in r.docs] == ["Deployment"]


def test_subchart_values_are_checked_by_its_schema(tmp_path: Path) -> None:
    umbrella = vendor_umbrella(tmp_path)
    with pytest.raises(helm_python.HelmValuesError, match="activeDeadlineSecond.*not allowed"):
        render({"migrate-job": {"job": {"activeDeadlineSecond": 100}}}, chart_dir=umbrella)
