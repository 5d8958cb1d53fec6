"""Shared helpers of the chart tests: render the chart with the real Helm engine.

helm-python-sdk bundles Helm v4's library: the same Go code `helm template` and `helm lint` run
(there is no `helm` binary on these machines). Everything renders offline: no cluster involved.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "migrate-job"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMESPACE = "shop"
RELEASE = "shop"

try:
    import helm_python
except ImportError as exc:  # fail loudly: these tests must never skip because a tool is missing
    raise RuntimeError("tests/helm need helm-python-sdk (pip install helm-python-sdk)") from exc

# A database must be configured (the chart refuses to render without one), so the smallest
# useful configuration is "the URL is in an existing Secret".
EXISTING_SECRET = {"database": {"existingSecret": {"name": "shop-db", "key": "url"}}}

# The values matrix every render-level test runs over.
SCENARIOS: dict[str, dict[str, Any]] = {
    "existing-secret-env": EXISTING_SECRET,
    "existing-secret-file": {
        "database": {"secretSource": "file", "existingSecret": {"name": "shop-db", "key": "url"}}
    },
    "aws": {
        "identity": {"aws": {"roleArn": "arn:aws:iam::123456789012:role/shop-migrate"}},
        "database": {
            "secretSource": "aws",
            "aws": {"secretId": "prod/shop/db", "region": "eu-west-1"},
        },
        "backup": {"uri": "s3://shop-backups/migrations"},
    },
    "azure": {
        "identity": {"azure": {"clientId": "11111111-2222-3333-4444-555555555555"}},
        "database": {
            "secretSource": "azure",
            "azure": {"vaultUrl": "https://shop-kv.vault.azure.net", "secretName": "shop-db-url"},
        },
        "backup": {"uri": "azblob://shopbackups/migrations/prod"},
    },
    "pvc-backups": {
        **EXISTING_SECRET,
        "backup": {"volume": {"type": "existingClaim", "existingClaim": "shop-backups"}},
    },
    "emptydir-backups": {**EXISTING_SECRET, "backup": {"volume": {"type": "emptyDir"}}},
    "hooks-off": {**EXISTING_SECRET, "hooks": {"enabled": False}},
    "hooks-off-argo-waves": {**EXISTING_SECRET, "hooks": {"enabled": False},
                             "argo": {"syncWave": -1}},
    "argo": {**EXISTING_SECRET, "argo": {"enabled": True}},
    "inline-url": {"database": {"url": "postgresql://shop:inline-sentinel-pw@db:5432/shop"}},
    "libpq-params": {
        "database": {"host": "db.internal", "port": 5432, "name": "shop", "user": "shop_migrator",
                     "sslmode": "verify-full", "password": "pgpass-sentinel"},
        "notify": {"url": "https://hooks.example.invalid/services/T000/B000/notify-sentinel"},
    },
    "existing-sa": {
        **EXISTING_SECRET,
        "serviceAccount": {"create": False, "name": "shop-migrator"},
        "identity": {"azure": {"clientId": "11111111-2222-3333-4444-555555555555"}},
    },
    "everything": {
        **EXISTING_SECRET,
        "job": {"ttlSecondsAfterFinished": 86400, "annotations": {"team": "payments"},
                "labels": {"team": "payments"}},
        "pod": {"annotations": {"prometheus.io/scrape": "false"}, "labels": {"tier": "db"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "jobs",
                                 "effect": "NoSchedule"}],
                "priorityClassName": "high"},
        "imagePullSecrets": [{"name": "ghcr"}],
        "image": {"digest": "sha256:" + "a" * 64},
        "notify": {"existingSecret": {"name": "slack-webhook", "key": "url"}},
        "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        "extraEnvFrom": [{"configMapRef": {"name": "shop-extra"}}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "shop-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/shop", "readOnly": True}],
        "args": ["run", "--json"],
    },
}


@dataclass
class Rendered:
    """The manifests of one render, parsed, plus the raw text per template."""

    files: dict[str, str]
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    @property
    def job(self) -> dict[str, Any]:
        return self.one("Job")

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.job["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod_spec["containers"]
        assert len(containers) == 1
        c: dict[str, Any] = containers[0]
        return c

    @property
    def notes(self) -> str:
        return next((v for k, v in self.files.items() if k.endswith("NOTES.txt")), "")


def parse(files: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for name, text in files.items():
        if name.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{name} rendered a non-mapping document"
                docs.append(doc)
    return docs


def render(values: dict[str, Any] | None, *, chart_dir: Path = CHART_DIR, name: str = RELEASE,
           namespace: str = NAMESPACE) -> Rendered:
    with helm_python.Chart.load(chart_dir) as chart:
        files = chart.render(values, name=name, namespace=namespace)
    return Rendered(files, parse(files))


def vendor_umbrella(tmp_path: Path) -> Path:
    """The example umbrella chart with this chart vendored into charts/, as
    `helm dependency build` would leave it."""
    target = tmp_path / "shop"
    shutil.copytree(FIXTURES / "umbrella", target)
    shutil.copytree(CHART_DIR, target / "charts" / "migrate-job")
    return target
