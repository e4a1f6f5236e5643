"""Issuance refusals, each with a stable code (see ``ca.errors``)."""

from __future__ import annotations

from ca.errors import DomainError, ErrorCategory


class IssuanceError(DomainError):
    """Base of issuance refusals."""

    code = "issuance_error"


class CSRMalformed(IssuanceError):
    """The CSR is not PEM/DER PKCS#10 (RFC 2986) or is too large."""

    code = "csr_malformed"
    category = ErrorCategory.BAD_REQUEST


class CSRTooLarge(CSRMalformed):
    """The CSR is larger than 16 KiB."""

    code = "csr_too_large"


class CSRSignatureInvalid(IssuanceError):
    """The CSR's self-signature does not verify: no proof of possession (RFC 2986 3)."""

    code = "csr_signature_invalid"
    category = ErrorCategory.BAD_REQUEST


class CSRKeyRejected(IssuanceError):
    """The CSR's public key breaks the key policy (``code`` names the rule)."""

    code = "csr_key_rejected"
    category = ErrorCategory.INVALID


class DownloadCodeInvalid(IssuanceError):
    """The download code is unknown or belongs to another service location."""

    code = "download_code_invalid"
    category = ErrorCategory.FORBIDDEN


class DownloadCodeUsed(IssuanceError):
    """The download code has been used already (single use)."""

    code = "download_code_used"
    category = ErrorCategory.CONFLICT


class DownloadCodeExpired(IssuanceError):
    """The download code is past its expiry (60 days by default)."""

    code = "download_code_expired"
    category = ErrorCategory.GONE


class PKCS12PasswordRejected(IssuanceError):
    """The PKCS#12 password is too short or not printable."""

    code = "pkcs12_password_rejected"
    category = ErrorCategory.INVALID
