"""The mTLS app's reading of the ASGI TLS extension, without a TLS listener."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_mtls_app
from api.services import Services


def test_unparseable_client_certificate_in_the_tls_scope_is_refused(services: Services) -> None:
    """A TLS extension carrying something that is not a certificate is a 403, not a 500."""
    app = create_mtls_app(services)

    async def with_bad_tls(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        scope = dict(scope)
        tls = {"client_cert_chain": ["not a PEM"], "client_cert_error": None}
        scope["extensions"] = {"tls": tls}
        await app(scope, receive, send)

    with TestClient(with_bad_tls, raise_server_exceptions=False) as client:
        response = client.get("/mtls/whoami")
    assert response.status_code == 403
    assert response.json()["code"] == "client_certificate_unknown"
