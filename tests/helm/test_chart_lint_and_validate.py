"""`helm lint` is clean and every rendered manifest is valid Kubernetes (strict OpenAPI schemas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from helmchart import CHART_DIR, SCENARIOS, render, vendor_umbrella
from kubernetes_validate.utils import latest_version

# The newest Kubernetes whose schemas ship in the kubernetes-validate wheel (1.37 when written).
K8S_VERSION = latest_version()


def lint_problems(report: dict[str, Any]) -> list[str]:
    """Warnings and errors; info-level advice ("icon is recommended") is not a problem."""
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + list(
        report["errors"]
    )


def test_schemas_are_a_current_kubernetes() -> None:
    major, minor = (int(x) for x in K8S_VERSION.split(".")[:2])
    assert (major, minor) >= (1, 37), f"kubernetes-validate only ships {K8S_VERSION}"


def test_lint_clean_with_defaults() -> None:
    report = helm_python.lint(CHART_DIR, strict=True)
    assert report["total_charts_linted"] == 1
    assert lint_problems(report) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_clean(scenario: str) -> None:
    report = helm_python.lint(CHART_DIR, SCENARIOS[scenario], strict=True,
                              kube_version=f"v{K8S_VERSION}.0")
    assert lint_problems(report) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_is_valid_kubernetes(scenario: str) -> None:
    rendered = render(SCENARIOS[scenario])
    assert rendered.docs, "nothing rendered"
    for doc in rendered.docs:
        # Raises ValidationError naming the offending field; strict rejects unknown keys.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The validator this suite relies on does reject what it should."""
    job = render(SCENARIOS["existing-secret-env"]).job
    job["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_umbrella_chart_lints_and_validates(tmp_path: Path) -> None:
    umbrella = vendor_umbrella(tmp_path)
    report = helm_python.lint(umbrella, strict=True, with_subcharts=True)
    assert lint_problems(report) == []
    rendered = render(None, chart_dir=umbrella)
    kinds = sorted(d["kind"] for d in rendered.docs)
    assert kinds == ["ConfigMap", "Deployment", "Job", "ServiceAccount"]
    for doc in rendered.docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
