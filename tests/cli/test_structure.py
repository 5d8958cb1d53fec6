"""Package shape that keeps start-up cheap and imports acyclic."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, job_env

JOB = REPO / "job"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_backup_target_protocol_imports_none_of_its_implementations():
    imported = _imports(JOB / "backup" / "target.py")
    assert not {m for m in imported if m.startswith("job.backup")}, imported
    for adapter in ("file_target", "s3_target", "azblob_target"):
        assert "job.backup.target" in _imports(JOB / "backup" / f"{adapter}.py")


def test_ecs_run_is_a_package_and_the_flat_modules_are_gone():
    assert (JOB / "ecs" / "__init__.py").exists()
    for old in ("ecs.py", "ecs_outcome.py", "ecs_request.py", "ecs_wait.py"):
        assert not (JOB / old).exists(), old
    for path in JOB.rglob("*.py"):
        for module in _imports(path):
            assert not module.startswith(("job.ecs_outcome", "job.ecs_request", "job.ecs_wait")), (
                path, module)


def _modules_loaded(*args: str) -> set[str]:
    code = ("import sys, runpy; sys.argv = ['migrate-job', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('job', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('\\n'.join(sorted(sys.modules)), file=sys.__stderr__)")
    res = subprocess.run([sys.executable, "-c", code, *args], env=job_env(), capture_output=True,
                         text=True, timeout=60, cwd=str(REPO))
    return set(res.stderr.split())


def test_help_and_usage_errors_load_no_database_or_cloud_library():
    for args in (["--help"], ["run", "--help"], [], ["stauts"]):
        loaded = _modules_loaded(*args)
        assert "job.cli" in loaded
        heavy = {m for m in loaded if m.split(".")[0] in (
            "psycopg", "structlog", "boto3", "botocore", "azure", "yoyo", "postgast")}
        assert not heavy, (args, sorted(heavy)[:10])
