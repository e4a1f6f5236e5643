"""Key types and the key store interface, with the encrypted-file implementation.

Keys are addressed by URI (as step-ca's KMS does): ``file:NAME`` is a PEM file
``NAME`` inside the key directory, written as encrypted PKCS#8 (RFC 5958, PBES2)
with mode 0600. A PKCS#11 backend can implement :class:`KeyStore` later with
``pkcs11:`` URIs; the database stores only the URI, never a key.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class KeyType(enum.StrEnum):
    """Key algorithms ehrca generates (NIST SP 800-57 part 1 strengths)."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"


ROOT_KEY_TYPES = frozenset({KeyType.EC_P384, KeyType.RSA_3072, KeyType.RSA_4096})
ISSUING_KEY_TYPES = frozenset({KeyType.EC_P256, KeyType.RSA_2048, KeyType.RSA_3072})


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """Generate a fresh private key of ``key_type`` (RSA public exponent 65537)."""
    if key_type is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    bits = int(key_type.value.removeprefix("rsa-"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


class KeyStoreError(Exception):
    """A key cannot be created or loaded (exists already, missing, wrong passphrase)."""


class KeyStore(Protocol):
    """Creates and loads CA private keys by URI."""

    def create_key(self, name: str, key_type: KeyType) -> tuple[str, PrivateKey]:
        """Generate and persist a key; return ``(key_ref, key)``. Refuses to overwrite."""
        ...

    def load_key(self, key_ref: str) -> PrivateKey:
        """Load the key that ``key_ref`` (from :meth:`create_key`) names."""
        ...


class FileKeyStore:
    """Encrypted PKCS#8 PEM files in one directory (``file:NAME`` URIs).

    Args:
        directory: where the key files live (created with mode 0700 if missing).
        passphrase: bytes used to encrypt every key (``BestAvailableEncryption``:
            PBES2 with PBKDF2 and AES-256-CBC in cryptography's PKCS#8 output).

    Raises:
        KeyStoreError: from :meth:`create_key` when the file exists, and from
            :meth:`load_key` when it is missing or the passphrase is wrong.
    """

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        if not passphrase:
            raise ValueError("key store passphrase must not be empty")
        self.directory = directory
        self._passphrase = passphrase
        self._cache: dict[str, PrivateKey] = {}

    def _path(self, key_ref: str) -> Path:
        if not key_ref.startswith("file:"):
            raise KeyStoreError(f"unsupported key reference scheme: {key_ref.split(':', 1)[0]!r}")
        name = key_ref.removeprefix("file:")
        if not name or "/" in name or name.startswith("."):
            raise KeyStoreError(f"invalid key file name in {key_ref!r}")
        return self.directory / name

    def create_key(self, name: str, key_type: KeyType) -> tuple[str, PrivateKey]:
        """Generate a ``key_type`` key and write it to ``NAME.key.pem`` (mode 0600, O_EXCL)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_ref = f"file:{name}.key.pem"
        path = self._path(key_ref)
        key = generate_private_key(key_type)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise KeyStoreError(f"key file {path} exists already; refusing to overwrite") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        self._cache[key_ref] = key
        return key_ref, key

    def load_key(self, key_ref: str) -> PrivateKey:
        """Load (and cache in memory) the key named by ``key_ref``."""
        cached = self._cache.get(key_ref)
        if cached is not None:
            return cached
        path = self._path(key_ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyStoreError(f"key file {path} is missing") from exc
        try:
            key = serialization.load_pem_private_key(data, password=self._passphrase)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"cannot decrypt {path}: wrong passphrase or damaged file") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyStoreError(f"{path} holds an unsupported key type")
        self._cache[key_ref] = key
        return key
