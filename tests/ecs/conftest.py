"""ECS test fixtures; the helpers live in ecs_testkit.py (importable by name from the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ecs_testkit import aws_env, moto_ecs  # noqa: E402,F401 - re-exported fixtures
