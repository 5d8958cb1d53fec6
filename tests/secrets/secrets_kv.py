"""A local HTTPS endpoint speaking Azure Key Vault's GET-secret REST shape (and App Service's
managed-identity token endpoint), so the real azure-keyvault-secrets and azure-identity clients
run against it unchanged.

Key Vault's flow: an unauthenticated request gets 401 with a ``WWW-Authenticate: Bearer
authorization=..., resource=...`` challenge; the client asks its credential for a token for that
resource and repeats the request with ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT = "72f988bf-0000-0000-0000-2d7cd011db47"


@dataclass
class FakeVault:
    """State of the fake vault; tests change it between calls."""

    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> version -> value
    valid_tokens: set[str] = field(default_factory=set)
    forbidden: set[str] = field(default_factory=set)
    resource: str = "https://vault.azure.net"
    tenant: str = TENANT
    mi_header: str = "mi-header-secret"
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    port: int = 0

    def challenge(self) -> str:
        return (f'Bearer authorization="https://login.microsoftonline.com/{self.tenant}", '
                f'resource="{self.resource}"')

    def set_secret(self, name: str, value: str, version: str | None = None) -> str:
        versions = self.secrets.setdefault(name, {})
        version = version or f"v{len(versions) + 1:031d}"
        versions[version] = value
        return version

    def latest(self, name: str) -> tuple[str, str] | None:
        versions = self.secrets.get(name)
        if not versions:
            return None
        version = list(versions)[-1]
        return version, versions[version]


def _handler(vault: FakeVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            auth = self.headers.get("Authorization")
            vault.requests.append(("GET", parts.path, auth))
            if parts.path == "/msi/token":
                return self._token(parse_qs(parts.query))
            segments = [s for s in parts.path.split("/") if s]
            if len(segments) not in (2, 3) or segments[0] != "secrets":
                return self._send(400, {"error": {"code": "BadParameter", "message": "bad path"}})
            if not auth or not auth.startswith("Bearer "):
                challenge = vault.challenge()
                return self._send(401, {"error": {"code": "Unauthorized",
                                                  "message": "AKV10000: Request is missing a "
                                                             "Bearer or PoP token."}},
                                  {"WWW-Authenticate": challenge})
            if auth.removeprefix("Bearer ") not in vault.valid_tokens:
                challenge = vault.challenge()
                return self._send(401, {"error": {"code": "Unauthorized",
                                                  "message": "AKV10032: Invalid issuer."}},
                                  {"WWW-Authenticate": challenge})
            name = segments[1]
            if name in vault.forbidden:
                return self._send(403, {"error": {
                    "code": "Forbidden",
                    "message": "Caller is not authorized to perform action on resource.",
                    "innererror": {"code": "ForbiddenByRbac"}}})
            versions = vault.secrets.get(name, {})
            if len(segments) == 3:
                found = (segments[2], versions[segments[2]]) if segments[2] in versions else None
            else:
                found = vault.latest(name)
            if found is None:
                return self._send(404, {"error": {
                    "code": "SecretNotFound",
                    "message": f"A secret with (name/id) {name} was not found in this key vault."}})
            version, value = found
            now = int(time.time())
            return self._send(200, {
                "value": value,
                "id": f"{vault.url}/secrets/{name}/{version}",
                "attributes": {"enabled": True, "created": now, "updated": now,
                               "recoveryLevel": "Recoverable+Purgeable"},
                "tags": {},
            })

        def do_POST(self) -> None:  # noqa: N802
            # Entra ID token endpoint (AZURE_AUTHORITY_HOST): /{tenant}/oauth2/v2.0/token, as used
            # by WorkloadIdentityCredential's client-assertion exchange.
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            vault.requests.append(("POST", parts.path, None))
            vault.token_requests.append(form)
            if not parts.path.endswith("/oauth2/v2.0/token"):
                return self._send(404, {"error": "not_found"})
            token = f"entra-token-{len(vault.valid_tokens) + 1}"
            vault.valid_tokens.add(token)
            return self._send(200, {"access_token": token, "token_type": "Bearer",
                                    "expires_in": 3600, "ext_expires_in": 3600})

        def _token(self, query: dict[str, list[str]]) -> None:
            # App Service managed identity (IDENTITY_ENDPOINT / IDENTITY_HEADER), 2019-08-01.
            if self.headers.get("X-IDENTITY-HEADER") != vault.mi_header:
                return self._send(401, {"error": "bad identity header"})
            token = f"mi-token-{len(vault.valid_tokens) + 1}"
            vault.valid_tokens.add(token)
            return self._send(200, {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": query.get("resource", [""])[0],
                "token_type": "Bearer",
            })

    return Handler


class KeyVaultServer:
    def __init__(self, cert: Any, vault: FakeVault | None = None) -> None:
        """``cert``: a trustme LeafCert for 127.0.0.1/localhost."""
        self.vault = vault or FakeVault()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.vault))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.vault.port = self.httpd.server_address[1]
        self.vault.url = f"https://127.0.0.1:{self.vault.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeVault:
        self.thread.start()
        return self.vault

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StaticCredential:
    """A test credential: issues tokens the fake vault accepts, and records the requests."""

    def __init__(self, vault: FakeVault | None, token: str = "test-token") -> None:
        self.token = token
        self.calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        if vault is not None:
            vault.valid_tokens.add(token)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.calls.append((scopes, kwargs))
        return AccessToken(self.token, int(time.time()) + 3600)
