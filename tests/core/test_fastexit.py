"""The process leaves without the interpreter teardown, yet nothing said or registered is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO, job_env


def _env() -> dict[str, str]:
    # Buffered output, as a log shipper's pipe gets it without PYTHONUNBUFFERED.
    return {k: v for k, v in job_env().items() if k != "PYTHONUNBUFFERED"}


def _run(body: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys\nsys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=60)


def test_exit_keeps_buffered_output_and_atexit_handlers_but_skips_teardown():
    res = _run("""
        import atexit
        from job.fastexit import exit_now

        class Torn:
            def __del__(self):
                print("teardown ran", file=sys.__stderr__, flush=True)

        kept = Torn()  # a module global: only the interpreter teardown deletes it
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        sys.stdout.write("summary without newline")  # buffered: a pipe is not a TTY
        exit_now(7)
    """)
    assert res.returncode == 7
    assert res.stdout == "summary without newline"
    assert "atexit ran" in res.stderr
    assert "teardown ran" not in res.stderr


def test_exit_waits_for_a_running_non_daemon_thread():
    res = _run("""
        import threading, time
        from job.fastexit import exit_now

        def finish_upload():
            time.sleep(0.2)
            print("upload finished", flush=True)

        threading.Thread(target=finish_upload).start()
        exit_now(0)
    """)
    assert res.returncode == 0
    assert "upload finished" in res.stdout


def test_exit_code_survives_a_reader_that_went_away():
    # `true` exits at once; the output is flushed half a second later into a pipe nobody reads.
    res = subprocess.run(
        f"{sys.executable} -c \"import sys, time; sys.path.insert(0, {str(REPO)!r}); "
        "from job.fastexit import exit_now; time.sleep(0.5); sys.stdout.write('plan'); "
        "exit_now(5)\" | true; echo ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", env=_env(), capture_output=True, text=True,
        timeout=60)
    assert res.stdout.strip() == "5", res.stderr
