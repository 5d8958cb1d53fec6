"""``MIGRATE_SECRET_SOURCE=aws``: AWS Secrets Manager, version stage ``AWSCURRENT``.

Credentials and region come from boto3's default chain (ECS task role, IRSA, EKS Pod Identity,
``AWS_*`` variables); a secret given as an ARN brings its own region. ``AWS_ENDPOINT_URL`` is
honoured by boto3 itself (VPC endpoints, tests). boto3 is imported here only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from job import redact
from job.db import ConnParams, base_params
from job.errors import ConfigError
from job.log import get_logger
from job.secrets import value

if TYPE_CHECKING:
    from job.settings import Settings

# What an operator should check for the error codes GetSecretValue returns.
_HINTS = {
    "ResourceNotFoundException": "no such secret in this account and region (check the name or "
                                 "use the full ARN; AWSCURRENT must exist)",
    "AccessDeniedException": "the task/pod role needs secretsmanager:GetSecretValue on this "
                             "secret (and kms:Decrypt when it uses a customer-managed key)",
    "DecryptionFailure": "the role cannot decrypt the secret: grant kms:Decrypt on its KMS key",
    "InvalidRequestException": "the secret is scheduled for deletion or has no AWSCURRENT value",
    "UnrecognizedClientException": "the AWS credentials are invalid",
    "InvalidSignatureException": "the AWS credentials are invalid or the clock is skewed",
    "ExpiredTokenException": "the AWS session credentials have expired",
}


def _region_of(secret_id: str) -> str | None:
    # arn:aws:secretsmanager:<region>:<account>:secret:<name>
    parts = secret_id.split(":")
    if secret_id.startswith("arn:") and len(parts) >= 6 and parts[2] == "secretsmanager":
        return parts[3] or None
    return None


def client_config() -> Any:
    from botocore.config import Config

    # Fail in seconds rather than hang a deploy on an unreachable endpoint; standard retries
    # back off on throttling and transient 5xx.
    return Config(connect_timeout=5, read_timeout=10,
                  retries={"max_attempts": 5, "mode": "standard"})


class AwsSecretsManagerSource:
    name = "aws"

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self.settings = settings
        self.secret_id = settings.aws_secret_id or ""
        self.key = settings.aws_secret_key
        self._client = client

    def describe(self) -> str:
        return f"aws secret {self.secret_id!r}"

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client(
                "secretsmanager", region_name=_region_of(self.secret_id), config=client_config()
            )
        return self._client

    def fetch(self) -> ConnParams:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            NoRegionError,
        )

        where = self.describe()
        if not self.secret_id:
            raise ConfigError("MIGRATE_SECRET_SOURCE=aws needs MIGRATE_AWS_SECRET_ID")
        try:
            resp = self.client().get_secret_value(SecretId=self.secret_id,
                                                  VersionStage="AWSCURRENT")
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = err.get("Code", "Unknown")
            message = redact.scrub(str(err.get("Message", "")))
            hint = _HINTS.get(code, "")
            raise ConfigError(
                f"{where}: Secrets Manager refused GetSecretValue: {code}"
                + (f": {message}" if message else "") + (f" ({hint})" if hint else ""),
                provider="aws", secret_id=self.secret_id, error_code=code,
            ) from None
        except NoRegionError:
            raise ConfigError(
                f"{where}: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) or give the "
                "secret's full ARN", provider="aws", secret_id=self.secret_id,
                error_code="NoRegionError",
            ) from None
        except NoCredentialsError:
            raise ConfigError(
                f"{where}: no AWS credentials found (ECS task role, IRSA, EKS Pod Identity or "
                "AWS_* variables)", provider="aws", secret_id=self.secret_id,
                error_code="NoCredentialsError",
            ) from None
        except BotoCoreError as exc:
            # Endpoint unreachable, timeouts after retries, bad endpoint URL, ...
            raise ConfigError(
                f"{where}: cannot reach Secrets Manager: {type(exc).__name__}: "
                f"{redact.scrub(str(exc))}", provider="aws", secret_id=self.secret_id,
                error_code=type(exc).__name__,
            ) from None
        text = resp.get("SecretString")
        if text is None:
            raw = resp.get("SecretBinary") or b""
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{where}: SecretBinary is not UTF-8 text") from None
        params = value.parse(text, base_params(self.settings), where, json_key=self.key,
                             require_password=self.settings.auth == "password")
        get_logger().info("secrets.fetched", source="aws", secret_id=self.secret_id,
                          version_id=resp.get("VersionId"), database=params.display())
        return params
