"""Helpers shared by the credentials tests."""

from __future__ import annotations

import os
from typing import Any

HOSTILE_PASSWORD = "p@ss/w#rd% ?:é"


def settings_for(**env: str) -> Any:
    """Settings from exactly these variables (plus the AWS/Azure ones of this process)."""
    from job.settings import load

    passthrough = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "AZURE_"))}
    return load({**passthrough, **env})
