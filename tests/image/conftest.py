"""Show the image's size and cold start at the end of a run that measured them."""

from __future__ import annotations

from typing import Any

from tests.image.podman_image import MEASURED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # A run filtered with -k may measure only part of it (e.g. the no-op): report what exists.
    if "size_mb" not in MEASURED or "cold_start_median_s" not in MEASURED:
        if MEASURED:
            terminalreporter.write_line(f"image measurements (partial): {dict(MEASURED)}")
        return
    terminalreporter.write_line(
        f"image: {MEASURED['size_mb']} MB, cold start (podman run ... --version) median "
        f"{MEASURED['cold_start_median_s']} s over {len(MEASURED['cold_start_samples_s'])} runs"
        f"; `run` with nothing pending {MEASURED.get('noop_run_s')} s [{MEASURED['file']}]"
    )
