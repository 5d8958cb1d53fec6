"""What the chart promises about the hook Job (shared/NOTES.md §9), asserted on real renders.

kubernetes-validate checks shapes, not enum values or cross-field rules, so those are asserted
here explicitly (restartPolicy, hook phases, delete policies, PSS fields).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helmchart import SCENARIOS, Rendered, render

HOOK = "helm.sh/hook"
WEIGHT = "helm.sh/hook-weight"
DELETE = "helm.sh/hook-delete-policy"
HELM_DEFAULT_TIMEOUT_S = 300  # `helm install/upgrade --timeout` default: 5m0s


def ann_of(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["metadata"].get("annotations") or {})


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def configmap_data(r: Rendered) -> dict[str, str]:
    return dict(r.one("ConfigMap")["data"])


@pytest.fixture(params=sorted(SCENARIOS))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return render(SCENARIOS[request.param])


# --- hook ordering -------------------------------------------------------------------------


def test_job_is_a_pre_install_pre_upgrade_hook_at_weight_zero() -> None:
    r = render(SCENARIOS["existing-secret-env"])
    ann = ann_of(r.job)
    assert set(ann[HOOK].split(",")) == {"pre-install", "pre-upgrade"}
    assert ann[WEIGHT] == "0"
    assert ann[DELETE] == "before-hook-creation,hook-succeeded"


@pytest.mark.parametrize("scenario", ["existing-secret-env", "inline-url", "libpq-params"])
def test_dependencies_are_hooks_created_before_the_job(scenario: str) -> None:
    """On first install a pre-install hook runs before ordinary resources exist: the
    ServiceAccount (-10) and the ConfigMap/Secret (-5) must be hooks with lower weights."""
    r = render(SCENARIOS[scenario])
    job_weight = int(ann_of(r.job)[WEIGHT])
    sa = ann_of(r.one("ServiceAccount"))
    assert sa[HOOK] == "pre-install,pre-upgrade" and sa[WEIGHT] == "-10"
    for kind in ("ConfigMap", "Secret"):
        for doc in r.of_kind(kind):
            ann = ann_of(doc)
            assert ann[HOOK] == "pre-install,pre-upgrade" and ann[WEIGHT] == "-5"
            assert int(sa[WEIGHT]) < int(ann[WEIGHT]) < job_weight
    for doc in r.docs:
        # hook-failed would delete the failed Job (and its logs) or the config it ran with;
        # without before-hook-creation the next upgrade fails with "already exists".
        assert ann_of(doc)[DELETE] == "before-hook-creation,hook-succeeded"


def test_job_references_exactly_what_the_hooks_create() -> None:
    r = render(SCENARIOS["inline-url"])
    assert r.pod_spec["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]
    refs = [src["configMapRef"]["name"] for src in r.container["envFrom"] if "configMapRef" in src]
    assert refs == [r.one("ConfigMap")["metadata"]["name"]]
    secret = r.one("Secret")["metadata"]["name"]
    url = env_of(r.container)["MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert url == {"name": secret, "key": "MIGRATE_DATABASE_URL"}
    assert "MIGRATE_DATABASE_URL" in r.one("Secret")["stringData"]


# --- the Job ---------------------------------------------------------------------------------


def test_job_fails_fast_and_once(rendered: Rendered) -> None:
    spec = rendered.job["spec"]
    assert spec["backoffLimit"] == 0
    assert rendered.pod_spec["restartPolicy"] == "Never"
    assert spec["podReplacementPolicy"] == "Failed"
    rules = spec["podFailurePolicy"]["rules"]
    ignore = [r for r in rules if r["action"] == "Ignore"]
    fail = [r for r in rules if r["action"] == "FailJob"]
    assert ignore and ignore[0]["onPodConditions"] == [{"type": "DisruptionTarget",
                                                         "status": "True"}]
    # Disruption must be matched before the exit-code rule (first match wins): a drained node's
    # SIGTERM exit is retried, not a failed deploy.
    assert rules.index(ignore[0]) < rules.index(fail[0])
    codes = fail[0]["onExitCodes"]
    assert codes["containerName"] == rendered.container["name"]
    assert codes["operator"] == "In" and codes["values"] == list(range(1, 11))


def test_deadline_is_below_helms_default_timeout() -> None:
    r = render(SCENARIOS["existing-secret-env"])
    deadline = r.job["spec"]["activeDeadlineSeconds"]
    grace = r.pod_spec["terminationGracePeriodSeconds"]
    assert deadline == 240
    assert deadline + grace < HELM_DEFAULT_TIMEOUT_S


def test_default_waits_fit_inside_the_deadline() -> None:
    """Waiting for the database and then for the lock must end before the Job is killed, so a
    stuck run exits 3/4 with its own message rather than DeadlineExceeded."""
    from job.settings import parse_duration

    r = render(SCENARIOS["existing-secret-env"])
    data = configmap_data(r)
    waits = parse_duration(data["MIGRATE_DB_WAIT"], "db") + parse_duration(
        data["MIGRATE_LOCK_WAIT"], "lock")
    assert waits < r.job["spec"]["activeDeadlineSeconds"]


@pytest.mark.parametrize("deadline,grace,timeout", [(300, 30, 300), (280, 30, 300),
                                                    (600, 0, 600)])
def test_deadline_not_below_the_helm_timeout_is_refused(deadline: int, grace: int,
                                                        timeout: int) -> None:
    values = {**SCENARIOS["existing-secret-env"], "job": {"activeDeadlineSeconds": deadline},
              "pod": {"terminationGracePeriodSeconds": grace},
              "hooks": {"helmTimeoutSeconds": timeout}}
    with pytest.raises(Exception, match="must be below hooks.helmTimeoutSeconds"):
        render(values)


def test_longer_deadline_renders_with_a_matching_helm_timeout() -> None:
    values = {**SCENARIOS["existing-secret-env"], "job": {"activeDeadlineSeconds": 1200},
              "hooks": {"helmTimeoutSeconds": 1500}}
    assert render(values).job["spec"]["activeDeadlineSeconds"] == 1200


def test_ttl_is_optional() -> None:
    assert "ttlSecondsAfterFinished" not in render(SCENARIOS["existing-secret-env"]).job["spec"]
    assert render(SCENARIOS["everything"]).job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_failed_job_explains_itself(rendered: Rendered) -> None:
    c = rendered.container
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    data = configmap_data(rendered)
    assert c["terminationMessagePath"] == data["MIGRATE_TERMINATION_LOG"] == "/dev/termination-log"
    assert data["MIGRATE_LOG_FORMAT"] == "json"


def test_user_is_set_for_a_uid_without_passwd_entry(rendered: Rendered) -> None:
    env = env_of(rendered.container)
    assert env["USER"]["value"] == "migrate"
    assert env["HOME"]["value"] == "/tmp"


def test_sidecar_injection_disabled_by_default(rendered: Rendered) -> None:
    meta = rendered.job["spec"]["template"]["metadata"]
    assert meta["labels"]["sidecar.istio.io/inject"] == "false"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    assert meta["annotations"]["linkerd.io/inject"] == "disabled"


def test_sidecar_opt_out_can_be_turned_off() -> None:
    r = render({**SCENARIOS["existing-secret-env"], "pod": {"disableSidecarInjection": False}})
    meta = r.job["spec"]["template"]["metadata"]
    assert "sidecar.istio.io/inject" not in meta["labels"]
    assert "sidecar.istio.io/inject" not in (meta.get("annotations") or {})


def test_pod_labels_and_annotations_pass_through() -> None:
    r = render(SCENARIOS["everything"])
    meta = r.job["spec"]["template"]["metadata"]
    assert meta["labels"]["tier"] == "db"
    assert meta["annotations"]["prometheus.io/scrape"] == "false"
    assert ann_of(r.job)["team"] == "payments"
    assert r.pod_spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert r.pod_spec["imagePullSecrets"] == [{"name": "ghcr"}]
    assert r.container["image"] == "ghcr.io/migrate-job/migrate-job@sha256:" + "a" * 64
    assert r.container["args"] == ["run", "--json"]


def test_image_entrypoint_is_kept_and_run_is_the_argument() -> None:
    """A `command` would replace the image's `tini -- migrate-job` entrypoint, losing tini's
    signal forwarding; the chart passes `run` as args instead."""
    r = render(SCENARIOS["existing-secret-env"])
    assert "command" not in r.container
    assert r.container["args"] == ["run"]
    assert r.container["image"] == "ghcr.io/migrate-job/migrate-job:0.1.0"


# --- Pod Security Standard "restricted" ------------------------------------------------------


def test_pod_security_restricted(rendered: Rendered) -> None:
    pod, c = rendered.pod_spec, rendered.container
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and csc["runAsNonRoot"] is True
    assert psc["runAsUser"] == csc["runAsUser"] == 10001
    assert psc["runAsGroup"] == csc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
    # Restricted allows only these volume types.
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
               "persistentVolumeClaim", "projected", "secret", "name"}
    for vol in pod["volumes"]:
        assert set(vol) <= allowed, vol


def test_tmp_is_a_size_limited_emptydir(rendered: Rendered) -> None:
    vols = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    assert vols["tmp"]["emptyDir"]["sizeLimit"] == "64Mi"
    mounts = {m["mountPath"]: m["name"] for m in rendered.container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"


def test_resources_have_defaults(rendered: Rendered) -> None:
    res = rendered.container["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]


def test_no_api_token_by_default(rendered: Rendered) -> None:
    assert rendered.pod_spec["automountServiceAccountToken"] is False


# --- identity ------------------------------------------------------------------------------


def test_azure_workload_identity_label_is_on_the_pod_template() -> None:
    r = render(SCENARIOS["azure"])
    sa = r.one("ServiceAccount")
    client_id = "11111111-2222-3333-4444-555555555555"
    assert ann_of(sa)["azure.workload.identity/client-id"] == client_id
    # The webhook mutates pods carrying the label; on the ServiceAccount alone it does nothing.
    assert r.job["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert r.pod_spec["serviceAccountName"] == sa["metadata"]["name"]
    data = configmap_data(r)
    assert data["MIGRATE_SECRET_SOURCE"] == "azure"
    assert data["MIGRATE_AZURE_VAULT_URL"] == "https://shop-kv.vault.azure.net"
    assert data["MIGRATE_AZURE_SECRET_NAME"] == "shop-db-url"
    assert data["MIGRATE_BACKUP"] == "azblob://shopbackups/migrations/prod"
    assert "MIGRATE_DATABASE_URL" not in env_of(r.container)


def test_azure_label_with_an_existing_service_account() -> None:
    r = render(SCENARIOS["existing-sa"])
    assert r.of_kind("ServiceAccount") == []
    assert r.pod_spec["serviceAccountName"] == "shop-migrator"
    assert r.job["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_no_workload_identity_label_without_azure() -> None:
    labels = render(SCENARIOS["aws"]).job["spec"]["template"]["metadata"]["labels"]
    assert "azure.workload.identity/use" not in labels


def test_aws_irsa_annotation_and_secrets_manager() -> None:
    r = render(SCENARIOS["aws"])
    sa = ann_of(r.one("ServiceAccount"))
    assert sa["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/shop-migrate"
    data = configmap_data(r)
    assert data["MIGRATE_SECRET_SOURCE"] == "aws"
    assert data["MIGRATE_AWS_SECRET_ID"] == "prod/shop/db"
    assert data["AWS_REGION"] == "eu-west-1"
    assert data["MIGRATE_BACKUP"] == "s3://shop-backups/migrations"


# --- secrets -----------------------------------------------------------------------------------


def test_existing_secret_as_env() -> None:
    r = render(SCENARIOS["existing-secret-env"])
    ref = env_of(r.container)["MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "shop-db", "key": "url"}
    assert r.of_kind("Secret") == []
    assert configmap_data(r)["MIGRATE_SECRET_SOURCE"] == "env"


def test_existing_secret_as_mounted_file() -> None:
    r = render(SCENARIOS["existing-secret-file"])
    data = configmap_data(r)
    assert data["MIGRATE_SECRET_SOURCE"] == "file"
    assert data["MIGRATE_SECRET_FILE"] == "/var/run/secrets/migrate-job/url"
    vols = {v["name"]: v for v in r.pod_spec["volumes"]}
    secret = vols["database-secret"]["secret"]
    assert secret["secretName"] == "shop-db"
    assert secret["items"] == [{"key": "url", "path": "url"}]
    assert secret["defaultMode"] == 0o440
    mount = next(m for m in r.container["volumeMounts"] if m["name"] == "database-secret")
    assert mount == {"name": "database-secret", "mountPath": "/var/run/secrets/migrate-job",
                     "readOnly": True}
    assert "MIGRATE_DATABASE_URL" not in env_of(r.container)


def test_inline_credentials_go_to_a_hook_secret_not_the_configmap() -> None:
    r = render(SCENARIOS["libpq-params"])
    data = configmap_data(r)
    assert (data["PGHOST"], data["PGPORT"], data["PGDATABASE"], data["PGUSER"],
            data["PGSSLMODE"]) == ("db.internal", "5432", "shop", "shop_migrator", "verify-full")
    assert "PGPASSWORD" not in data and "MIGRATE_NOTIFY_URL" not in data
    secret = r.one("Secret")
    assert secret["stringData"]["PGPASSWORD"] == "pgpass-sentinel"
    env = env_of(r.container)
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert env["MIGRATE_NOTIFY_URL"]["valueFrom"]["secretKeyRef"]["key"] == "MIGRATE_NOTIFY_URL"


SENTINELS = ("inline-sentinel-pw", "pgpass-sentinel", "notify-sentinel")
CREDENTIAL_IN_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


def test_no_secret_value_in_any_configmap(rendered: Rendered) -> None:
    for cm in rendered.of_kind("ConfigMap"):
        text = json.dumps(cm)
        for sentinel in SENTINELS:
            assert sentinel not in text
        assert not CREDENTIAL_IN_URL.search(text), "a URL with a password in a ConfigMap"
        assert not {"PGPASSWORD", "MIGRATE_DATABASE_URL", "DATABASE_URL",
                    "MIGRATE_NOTIFY_URL"} & set(cm["data"])


def test_no_secret_value_anywhere_but_the_secret() -> None:
    for scenario in ("inline-url", "libpq-params"):
        r = render(SCENARIOS[scenario])
        for doc in r.docs:
            if doc["kind"] != "Secret":
                text = json.dumps(doc)
                assert not any(s in text for s in SENTINELS), doc["kind"]


def test_configmap_variables_are_ones_the_cli_reads(rendered: Rendered) -> None:
    """Chart and CLI agree on every variable name (job/settings.py is what the CLI reads)."""
    from job.settings import ENV_VARS, LIBPQ_ENV

    known = set(ENV_VARS) | set(LIBPQ_ENV) | {"AWS_REGION"}
    assert set(configmap_data(rendered)) <= known
    for name in env_of(rendered.container):
        assert name in known | {"MIGRATE_DATABASE_URL", "USER", "HOME",
                                "AWS_STS_REGIONAL_ENDPOINTS"}, name


# --- backups -------------------------------------------------------------------------------


def test_file_backups_on_an_existing_claim() -> None:
    r = render(SCENARIOS["pvc-backups"])
    vols = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert vols["backups"]["persistentVolumeClaim"] == {"claimName": "shop-backups"}
    mounts = {m["name"]: m["mountPath"] for m in r.container["volumeMounts"]}
    assert mounts["backups"] == "/backups"
    assert configmap_data(r)["MIGRATE_BACKUP"] == "file:///backups"
    # fsGroup makes the claim writable by the non-root UID.
    assert r.pod_spec["securityContext"]["fsGroup"] == 10001
    assert r.of_kind("PersistentVolumeClaim") == []


def test_file_backups_on_an_emptydir() -> None:
    r = render(SCENARIOS["emptydir-backups"])
    vols = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert vols["backups"]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert configmap_data(r)["MIGRATE_BACKUP"] == "file:///backups"


def test_no_backup_by_default() -> None:
    r = render(SCENARIOS["existing-secret-env"])
    assert configmap_data(r)["MIGRATE_BACKUP"] == "none"
    assert "backups" not in {v["name"] for v in r.pod_spec["volumes"]}


# --- refusals at render time -------------------------------------------------------------------


@pytest.mark.parametrize("values,message", [
    ({}, "no database configured"),
    ({"database": {"url": "postgresql://a:b@h/d", "existingSecret": {"name": "x"}}},
     "not both"),
    ({"database": {"secretSource": "aws"}}, "needs database.aws.secretId"),
    ({"database": {"secretSource": "azure", "azure": {"vaultUrl": "https://v.vault.azure.net"}}},
     "needs database.azure.vaultUrl and database.azure.secretName"),
    ({"database": {"secretSource": "file"}}, "secretSource file needs"),
    ({"database": {"secretSource": "aws", "aws": {"secretId": "x"}, "password": "p"}},
     "are for secretSource env"),
    ({**SCENARIOS["existing-secret-env"], "serviceAccount": {"create": False}},
     "set serviceAccount.name"),
    ({**SCENARIOS["existing-secret-env"], "serviceAccount": {"create": False, "name": "sa"},
      "identity": {"aws": {"roleArn": "arn:aws:iam::123456789012:role/r"}}},
     "annotate your own ServiceAccount"),
    ({**SCENARIOS["existing-secret-env"], "backup": {"uri": "file:///backups"}},
     "needs backup.volume"),
    ({**SCENARIOS["existing-secret-env"], "backup": {"volume": {"type": "existingClaim"}}},
     "needs backup.volume.existingClaim"),
])
def test_misconfiguration_fails_at_render_time(values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        render(values)
