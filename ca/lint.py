"""In-process RFC 5280 linting of certificates and CRLs with pkilint.

Boulder lints every certificate and CRL before it signs for real; this module is
the linting half of that step. It runs exactly the validators that pkilint's
command-line tools run, without a subprocess:

- :func:`lint_certificate` is ``lint_pkix_cert lint`` (``pkilint/bin/lint_pkix_cert.py``):
  the decoders from ``pkix.certificate.create_decoding_validators`` plus the
  issuer, validity, subject, extensions and subjectPublicKeyInfo containers
  wrapped by ``pkix.certificate.create_pkix_certificate_validator_container``.
  The CLI has no certificate-type option: one validator set covers root,
  intermediate and end-entity certificates, and the individual validators look
  at basicConstraints ``cA``, self-issuance and keyUsage themselves (for
  example ``KeyUsagePresenceValidator`` requires keyUsage only when ``cA`` is
  true). That is the "auto-detection" this module reproduces.
- :func:`lint_crl` is ``lint_crl lint -p PKIX -t CRL|ARL``
  (``pkilint/bin/lint_crl.py``): name and extension decoders plus the issuer,
  validity and extensions containers wrapped by
  ``pkix.crl.create_pkix_crl_validator_container``.

Profile choices (a private PKI, RFC 5280 only):

- No CA/Browser Forum rules: ``lint_crl -p BR``, ``lint_cabf_serverauth_cert``
  and ``lint_cabf_smime_cert`` are not used.
- CRL type: the CLI requires ``-t CRL|ARL``, but in pkilint 0.13.3 the type only
  selects CA/B Forum validators (validity-period limits and the reason-code
  allowlist in ``pkilint/cabf/cabf_crl.py``). Under the PKIX profile a CRL and
  an ARL get the same validators; ``crl_type`` is accepted, checked and kept so
  callers say which one they mean.
- Validity-period start and "validation level": ``lint_pkix_cert`` and
  ``lint_crl`` offer neither (only ``lint_cabf_serverauth_cert`` and
  ``lint_cabf_smime_cert`` take ``--validity-period-start`` to decide which
  effective-dated CA/B Forum rules apply, and only the S/MIME linter has
  validation levels), so there is nothing to choose.
- Severity threshold: the CLI's default ``--severity INFO``; pkilint's DEBUG
  findings are dropped, everything from FATAL to INFO is returned.
- Input is DER only (no PEM or Base64 sniffing as the CLI's ``DETECT`` format
  does): the bytes a CA is about to publish are what get linted.

Malformed input: if pkilint cannot decode the top-level structure (not a DER
SEQUENCE, truncated, not a Certificate/CertificateList), :func:`lint_certificate`
and :func:`lint_crl` raise :class:`LintError` (a :class:`ValueError`) carrying one
FATAL ``itu.invalid_asn1_syntax`` finding, pkilint's own code for decoding
failures; there is no document to report further findings on. Decoding failures
inside the document (an extension value, a name attribute) are ordinary FATAL
findings in the returned list, as in the CLI. An exception escaping pkilint
while it validates becomes :class:`LintError` with FATAL ``base.unhandled_exception``
(pkilint's code for a validator that raised). A non-``bytes`` argument raises
:class:`TypeError`. No other exception type leaves this module.

Known pkilint 0.13.3 false positives (both forms are valid RFC 5280; these
functions report them unchanged, so :func:`check_certificate` refuses them):

- A policy OID (or any OID in a decoded structure) with an arc of 2**32 - 1 or
  more, such as ``2.25.<UUID>``, or under ``2.<40 or more>``: pkilint's DER
  decoder (pyasn1-fasder 0.1.3) fails, giving FATAL ``itu.invalid_asn1_syntax``
  on that extension (and decodes an arc of exactly 2**32 silently as 0).
- A subjectAltName URI without an authority, such as ``urn:...``: pkilint checks
  URIs with ``validators.url`` (``scheme://host`` only), giving ERROR
  ``pkix.invalid_uri_syntax``.

Cost (measured in the development container, CPython 3.11.7, pkilint 0.13.3,
2 vCPUs, with the artifacts of ``tests/ca/test_lint.py``; median of 300 runs):

- One-time setup, paid at import: about 0.15 s, almost all of it importing
  pkilint; building both validator trees takes about 0.5 ms. The first lint in
  a process takes about 10 ms (pkilint warms lazy caches).
- Per certificate: 3.0 ms for the end-entity client certificate (P-256, nine
  extensions), 1.7 ms for the issuing CA, 2.3 ms for the self-signed root.
- Per CRL: 0.6 ms empty, 0.9 ms with one entry.

For comparison one ``lint_pkix_cert`` subprocess takes about 0.24 s.

The validator trees hold no per-document state (checked for 0.13.3: no
validator assigns to itself while validating; pkilint's own REST server,
``pkilint/rest/__init__.py``, builds them once and shares them across
requests), so they are built once here and shared by all threads.

Sources: RFC 5280 (certificate and CRL profile); pkilint 0.13.3
``pkilint/bin/lint_pkix_cert.py``, ``pkilint/bin/lint_crl.py``,
``pkilint/pkix/certificate/__init__.py``, ``pkilint/pkix/crl/__init__.py``,
``pkilint/loader.py``, ``pkilint/validation.py``, ``pkilint/rest/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from pkilint import loader, pkix, validation
from pkilint.document import SubstrateDecodingFailedError
from pkilint.pkix import certificate, crl, extension, name

Severity = Literal["FATAL", "ERROR", "WARNING", "NOTICE", "INFO"]
"""pkilint's severity names (``ValidationFindingSeverity``) down to the CLI default INFO."""

CrlType = Literal["crl", "arl"]
"""``lint_crl -t``: a CRL of end-entity certificates or an ARL (CA certificates)."""

SEVERITIES: Final[tuple[Severity, ...]] = ("FATAL", "ERROR", "WARNING", "NOTICE", "INFO")
"""Reported severities, most severe first."""

BLOCKING_SEVERITIES: Final[frozenset[Severity]] = frozenset({"FATAL", "ERROR"})
"""Severities that stop issuance: FATAL (undecodable) and ERROR (a MUST violated)."""

DECODING_FAILURE_CODE: Final[str] = (
    validation.DecodingValidator.VALIDATION_ASN1_DECODING_FAILURE.code
)
"""``itu.invalid_asn1_syntax``: the finding code for input pkilint cannot decode."""

UNHANDLED_EXCEPTION_CODE: Final[str] = (
    validation.Validator.VALIDATION_FINDING_UNHANDLED_EXCEPTION.code
)
"""``base.unhandled_exception``: the finding code for an exception inside pkilint."""

_DEBUG_SEVERITY: Final[Any] = validation.ValidationFindingSeverity.DEBUG


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One pkilint finding.

    Attributes:
        severity: ``"FATAL"``, ``"ERROR"`` (a MUST of RFC 5280 violated),
            ``"WARNING"`` (a SHOULD violated), ``"NOTICE"`` or ``"INFO"``;
            pkilint's ``ValidationFindingSeverity`` names.
        code: pkilint's finding code, e.g. ``"pkix.certificate_skid_ca_missing"``.
        message: pkilint's human-readable detail, or ``None`` when it gives none.
        node_path: dotted path of the ASN.1 node the finding is about, e.g.
            ``"certificate.tbsCertificate.extensions.2.extnValue.subjectKeyIdentifier"``.

    Raises:
        ValueError: ``severity`` is not one of :data:`SEVERITIES`, or ``code`` or
            ``node_path`` is empty.
    """

    severity: Severity
    code: str
    message: str | None
    node_path: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"lint finding severity must be one of {SEVERITIES}, got {self.severity!r}"
            )
        if not self.code:
            raise ValueError("lint finding code must not be empty")
        if not self.node_path:
            raise ValueError("lint finding node path must not be empty")

    @property
    def is_blocking(self) -> bool:
        """Whether the finding is FATAL or ERROR (see :func:`blocking`)."""
        return self.severity in BLOCKING_SEVERITIES

    def __str__(self) -> str:
        detail = f": {self.message}" if self.message else ""
        return f"{self.code} ({self.severity}) @ {self.node_path}{detail}"


class LintError(ValueError):
    """A certificate or CRL has FATAL or ERROR findings, or cannot be decoded at all.

    Args:
        message: what was linted and why it failed.
        findings: the blocking findings (at least one).

    Attributes:
        findings: the blocking findings, in pkilint's order.
    """

    findings: tuple[LintFinding, ...]

    def __init__(self, message: str, findings: Iterable[LintFinding]) -> None:
        self.findings = tuple(findings)
        summary = "; ".join(str(finding) for finding in self.findings)
        super().__init__(f"{message}: {summary}" if summary else message)


def _build_certificate_validator() -> Any:
    """The validator tree of ``lint_pkix_cert lint`` (pkilint/bin/lint_pkix_cert.py)."""
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def _build_crl_validator() -> Any:
    """The validator tree of ``lint_crl lint -p PKIX`` (pkilint/bin/lint_crl.py)."""
    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )


_CERTIFICATE_VALIDATOR: Final[Any] = _build_certificate_validator()

# Under the PKIX profile pkilint 0.13.3 lints CRLs and ARLs alike (the type only
# selects CA/B Forum validators), so both types share one tree.
_CRL_VALIDATOR: Final[Any] = _build_crl_validator()
_CRL_VALIDATORS: Final[dict[CrlType, Any]] = {"crl": _CRL_VALIDATOR, "arl": _CRL_VALIDATOR}


def _lint(der: bytes, *, loader_func: Any, validator: Any, root_name: str) -> list[LintFinding]:
    """Decode ``der`` with ``loader_func``, run ``validator``, convert the findings.

    Raises:
        TypeError: ``der`` is not ``bytes``.
        LintError: the document cannot be decoded, or pkilint raised while validating.
    """
    if not isinstance(der, bytes):
        raise TypeError(f"{root_name} must be DER bytes, got {type(der).__name__}")
    try:
        document = loader_func(der)
    except SubstrateDecodingFailedError as exc:
        finding = LintFinding("FATAL", DECODING_FAILURE_CODE, exc.message or str(exc), root_name)
        raise LintError(f"{root_name} is not decodable DER", [finding]) from exc
    except ValueError as exc:  # loader: "Substrate is not DER-encoded" (no leading SEQUENCE)
        finding = LintFinding("FATAL", DECODING_FAILURE_CODE, str(exc), root_name)
        raise LintError(f"{root_name} is not decodable DER", [finding]) from exc
    try:
        results = validator.validate(document.root)
        findings = [
            LintFinding(
                severity=description.finding.severity.name,
                code=description.finding.code,
                message=description.message,
                node_path=result.node.path,
            )
            for result in results
            for description in result.finding_descriptions
            if description.finding.severity < _DEBUG_SEVERITY
        ]
    except Exception as exc:
        finding = LintFinding("FATAL", UNHANDLED_EXCEPTION_CODE, repr(exc), root_name)
        raise LintError(f"pkilint failed while linting the {root_name}", [finding]) from exc
    return findings


def lint_certificate(der: bytes) -> list[LintFinding]:
    """Lint a DER certificate against RFC 5280 as ``lint_pkix_cert lint`` does.

    Args:
        der: the DER encoding of one X.509 certificate (RFC 5280 section 4.1).

    Returns:
        Every finding from FATAL to INFO, in pkilint's document order; an empty
        list when pkilint has nothing to say. Inner decoding failures (an
        undecodable extension value) are FATAL findings here, not exceptions.

    Raises:
        TypeError: ``der`` is not ``bytes``.
        LintError: ``der`` is not a decodable Certificate (one FATAL
            ``itu.invalid_asn1_syntax`` finding), or pkilint raised while
            validating (one FATAL ``base.unhandled_exception`` finding).
    """
    return _lint(
        der,
        loader_func=loader.load_der_certificate,
        validator=_CERTIFICATE_VALIDATOR,
        root_name="certificate",
    )


def lint_crl(der: bytes, *, crl_type: CrlType = "crl") -> list[LintFinding]:
    """Lint a DER CRL against RFC 5280 as ``lint_crl lint -p PKIX -t TYPE`` does.

    Args:
        der: the DER encoding of one CertificateList (RFC 5280 section 5.1).
        crl_type: ``"crl"`` for a CRL of end-entity certificates, ``"arl"`` for an
            authority revocation list (the root's CRL of CA certificates). pkilint
            0.13.3 lints both alike under the PKIX profile.

    Returns:
        Every finding from FATAL to INFO, in pkilint's document order.

    Raises:
        TypeError: ``der`` is not ``bytes``.
        ValueError: ``crl_type`` is not ``"crl"`` or ``"arl"``.
        LintError: ``der`` is not a decodable CertificateList (one FATAL
            ``itu.invalid_asn1_syntax`` finding), or pkilint raised while
            validating (one FATAL ``base.unhandled_exception`` finding).
    """
    validator = _CRL_VALIDATORS.get(crl_type)
    if validator is None:
        raise ValueError(f'crl_type must be "crl" or "arl", got {crl_type!r}')
    return _lint(
        der,
        loader_func=loader.load_der_crl,
        validator=validator,
        root_name="certificateList",
    )


def blocking(findings: Iterable[LintFinding]) -> list[LintFinding]:
    """Return the findings at ERROR or FATAL, in their original order.

    Args:
        findings: findings from :func:`lint_certificate` or :func:`lint_crl`.

    Returns:
        The findings that must stop issuance or publication.
    """
    return [finding for finding in findings if finding.is_blocking]


_SINGLE_LABEL = re.compile(
    r'^Invalid domain name syntax: "([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"$'
)


def is_known_false_positive(finding: LintFinding) -> bool:
    """True for a pkilint finding that contradicts RFC 5280 and is therefore waived.

    The one waived case: ``pkix.invalid_domain_name_syntax`` on a single-label LDH
    dNSName such as ``localhost``. RFC 5280 4.2.1.6 asks for the preferred name
    syntax of RFC 1034 3.5, which allows one label; pkilint's check (the
    ``validators.domain`` package) demands a dot. The mTLS listener's default SANs
    are ``localhost`` and ``127.0.0.1`` (issue #2), so this must pass.
    """
    return finding.code == "pkix.invalid_domain_name_syntax" and bool(
        _SINGLE_LABEL.match(finding.message or "")
    )


def check_certificate(der: bytes) -> None:
    """Lint a DER certificate and refuse it if anything is ERROR or FATAL.

    WARNING, NOTICE and INFO findings do not block; call :func:`lint_certificate`
    to see them. Findings for which :func:`is_known_false_positive` holds are waived.

    Args:
        der: the DER encoding of one X.509 certificate.

    Raises:
        TypeError: ``der`` is not ``bytes``.
        LintError: blocking findings exist (carried in ``.findings``), or the
            input cannot be decoded (see :func:`lint_certificate`).
    """
    found = [f for f in blocking(lint_certificate(der)) if not is_known_false_positive(f)]
    if found:
        raise LintError("certificate fails RFC 5280 lint", found)


def check_crl(der: bytes, *, crl_type: CrlType = "crl") -> None:
    """Lint a DER CRL and refuse it if anything is ERROR or FATAL.

    Args:
        der: the DER encoding of one CertificateList.
        crl_type: ``"crl"`` or ``"arl"``, as for :func:`lint_crl`.

    Raises:
        TypeError: ``der`` is not ``bytes``.
        ValueError: ``crl_type`` is not ``"crl"`` or ``"arl"``.
        LintError: blocking findings exist (carried in ``.findings``), or the
            input cannot be decoded (see :func:`lint_crl`).
    """
    found = blocking(lint_crl(der, crl_type=crl_type))
    if found:
        raise LintError(f"{crl_type.upper()} fails RFC 5280 lint", found)
