"""``MIGRATE_SECRET_SOURCE=file``: a mounted Kubernetes Secret or a CSI secret-store file.

The file holds a URL or the JSON shape (``job.secrets.value``). It is read on every fetch, so a
rotated secret that the kubelet or the CSI driver has re-projected is picked up on the re-fetch
after an authentication failure.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from job.db import ConnParams, base_params
from job.errors import ConfigError
from job.log import get_logger
from job.secrets import value

if TYPE_CHECKING:
    from job.settings import Settings


class FileSource:
    name = "file"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.secret_file or ""

    def describe(self) -> str:
        return f"secret file {self.path!r}"

    def fetch(self) -> ConnParams:
        where = self.describe()
        if not self.path:
            raise ConfigError("MIGRATE_SECRET_SOURCE=file needs MIGRATE_SECRET_FILE")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ConfigError(f"{where} does not exist (MIGRATE_SECRET_FILE)") from None
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(
                f"{where} is a directory: point MIGRATE_SECRET_FILE at the key's file inside "
                "the mounted Secret (e.g. /var/run/secrets/db/url)"
            )
        if st.st_mode & stat.S_IROTH:
            # Kubernetes projects Secret volumes 0644 unless told otherwise, so refusing would
            # break the default; saying so loudly lets the operator tighten defaultMode.
            get_logger().warning(
                "secrets.file_world_readable", path=self.path, mode=oct(st.st_mode & 0o777),
                hint="set defaultMode: 0400 on the Secret volume or chmod o-r the file",
            )
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise ConfigError(f"{where} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
        return value.parse(text, base_params(self.settings), where,
                           require_password=self.settings.auth == "password")
