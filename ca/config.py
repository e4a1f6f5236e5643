"""Configuration objects handed to the CA by ``api/`` (domain code never reads settings)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ca.keys import KeyType


@dataclass(frozen=True, slots=True)
class PkiUrls:
    """The public URLs written into certificates (RFC 5280 4.2.1.13 CRL distribution
    points, 4.2.2.1 authority information access). ``base_url`` has no trailing slash,
    e.g. ``http://127.0.0.1:8000``; plain HTTP on purpose (RFC 5280 8: relying parties
    must not need TLS to check revocation)."""

    base_url: str

    def ca_certificate(self, ca_name: str) -> str:
        """URL of the DER certificate of CA ``ca_name`` (``application/pkix-cert``)."""
        return f"{self.base_url}/pki/ca/{ca_name}.crt"

    def crl(self, ca_name: str) -> str:
        """URL of the DER CRL that CA ``ca_name`` signs (``application/pkix-crl``)."""
        return f"{self.base_url}/pki/crl/{ca_name}.crl"

    def crl_shard(self, ca_name: str, shard: int) -> str:
        """URL of partition ``shard`` (1..n) of ``ca_name``'s CRL (RFC 5280 5.2.5)."""
        return f"{self.base_url}/pki/crl/{ca_name}/shard-{shard}.crl"

    def ocsp(self, ca_name: str) -> str:
        """URL of the OCSP responder for certificates that ``ca_name`` issued (RFC 6960)."""
        return f"{self.base_url}/pki/ocsp/{ca_name}"


@dataclass(frozen=True, slots=True)
class CAConfig:
    """Everything the CA needs to build its hierarchy and issue.

    Attributes:
        urls: public URL layout.
        organization: O attribute of CA subjects.
        root_key_type / issuing_key_type: algorithms (see ``ca.keys``).
        root_validity / issuing_validity / client_validity / server_validity /
        ocsp_responder_validity: lifetime per profile of ``ca/profiles.toml``
            (``timedelta``; notAfter is inclusive, RFC 5280 4.1.2.5, so a lifetime of
            730 days ends one second before the 730-day mark).
        server_names: DNS names and IP addresses for the mTLS listener's certificate.
        crl_validity: nextUpdate - thisUpdate of every CRL.
        certificate_policy_oid: dotted OID written into client certificates'
            certificatePolicies. The default sits under PEN 32473, which RFC 5612 reserves
            for documentation: a deployment sets its own (every arc below 2**32 - 1, so
            pkilint's decoder can read it).
        identity_base_uri: prefix of the URI subjectAltName naming provider and
            location (``{identity_base_uri}/hcp/{reference}/sl/{number}``); an
            ``https://host/path`` URI because pkilint's URI check refuses ``urn:``.
    """

    urls: PkiUrls
    organization: str = "eHR Secure Connection"
    root_key_type: KeyType = KeyType.EC_P384
    issuing_key_type: KeyType = KeyType.EC_P256
    root_validity: dt.timedelta = dt.timedelta(days=20 * 365)
    issuing_validity: dt.timedelta = dt.timedelta(days=10 * 365)
    client_validity: dt.timedelta = dt.timedelta(days=730)
    server_validity: dt.timedelta = dt.timedelta(days=397)
    ocsp_responder_validity: dt.timedelta = dt.timedelta(days=7)
    server_names: tuple[str, ...] = field(default=("localhost", "127.0.0.1"))
    crl_validity: dt.timedelta = dt.timedelta(hours=24)
    certificate_policy_oid: str = "1.3.6.1.4.1.32473.1.1"
    identity_base_uri: str = "https://id.ehrca.example"
    #: CRL partitions (``EHRCA_CRL_SHARDS``): above 1, issuance writes the shard URL
    #: (:meth:`PkiUrls.crl_shard`) into each certificate's CRL distribution point.
    crl_shards: int = 1
