"""Tests for ca.keys: key generation per KeyType and the encrypted-file key store
(encrypted PKCS#8 PEM, mode 0600, no overwrite, ``file:`` references only)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import asn1crypto.keys
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.keys import (
    ISSUING_KEY_TYPES,
    ROOT_KEY_TYPES,
    FileKeyStore,
    KeyStoreError,
    KeyType,
    generate_private_key,
)

PASSPHRASE = b"test-passphrase-not-secret"


def public_der(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("key_type", "curve"), [(KeyType.EC_P256, "secp256r1"), (KeyType.EC_P384, "secp384r1")]
)
def test_generate_ec(key_type: KeyType, curve: str) -> None:
    key = generate_private_key(key_type)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == curve


@pytest.mark.parametrize(
    ("key_type", "bits"),
    [(KeyType.RSA_2048, 2048), (KeyType.RSA_3072, 3072), (KeyType.RSA_4096, 4096)],
)
def test_generate_rsa(key_type: KeyType, bits: int) -> None:
    key = generate_private_key(key_type)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == bits
    assert key.public_key().public_numbers().e == 65537


def test_key_type_sets() -> None:
    assert set(KeyType) == {
        KeyType.EC_P256,
        KeyType.EC_P384,
        KeyType.RSA_2048,
        KeyType.RSA_3072,
        KeyType.RSA_4096,
    }
    assert KeyType.RSA_2048 not in ROOT_KEY_TYPES
    assert KeyType.RSA_4096 not in ISSUING_KEY_TYPES
    assert set(KeyType) == ROOT_KEY_TYPES | ISSUING_KEY_TYPES


def test_create_writes_encrypted_pkcs8_mode_0600(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    store = FileKeyStore(directory, PASSPHRASE)
    key_ref, key = store.create_key("issuing-ca-1", KeyType.EC_P256)
    assert key_ref == "file:issuing-ca-1.key.pem"
    path = directory / "issuing-ca-1.key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert b"BEGIN PRIVATE KEY" not in pem
    # PKCS#8 EncryptedPrivateKeyInfo with PBES2 (RFC 5958, RFC 8018).
    body = b"".join(pem.splitlines()[1:-1])
    info = asn1crypto.keys.EncryptedPrivateKeyInfo.load(base64.b64decode(body))
    algorithm = info["encryption_algorithm"]
    assert algorithm["algorithm"].native == "pbes2"
    assert algorithm.encryption_cipher == "aes"
    assert algorithm.key_length == 32
    # The passphrase decrypts it and gives the same key.
    loaded = serialization.load_pem_private_key(pem, password=PASSPHRASE)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert public_der(loaded) == public_der(key)


def test_load_from_a_fresh_store(tmp_path: Path) -> None:
    key_ref, key = FileKeyStore(tmp_path, PASSPHRASE).create_key("root", KeyType.EC_P384)
    loaded = FileKeyStore(tmp_path, PASSPHRASE).load_key(key_ref)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.curve.name == "secp384r1"
    assert public_der(loaded) == public_der(key)


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path, PASSPHRASE)
    key_ref, key = store.create_key("root", KeyType.EC_P256)
    before = (tmp_path / "root.key.pem").read_bytes()
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        FileKeyStore(tmp_path, PASSPHRASE).create_key("root", KeyType.EC_P256)
    assert (tmp_path / "root.key.pem").read_bytes() == before
    assert public_der(FileKeyStore(tmp_path, PASSPHRASE).load_key(key_ref)) == public_der(key)


def test_wrong_passphrase(tmp_path: Path) -> None:
    key_ref, _ = FileKeyStore(tmp_path, PASSPHRASE).create_key("root", KeyType.EC_P256)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        FileKeyStore(tmp_path, b"another passphrase").load_key(key_ref)


def test_damaged_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "junk.key.pem").write_bytes(b"not a key")
    store = FileKeyStore(tmp_path, PASSPHRASE)
    with pytest.raises(KeyStoreError, match="damaged"):
        store.load_key("file:junk.key.pem")
    with pytest.raises(KeyStoreError, match="missing"):
        store.load_key("file:absent.key.pem")


def test_unencrypted_file_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "plain.key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyStoreError):
        FileKeyStore(tmp_path, PASSPHRASE).load_key("file:plain.key.pem")


@pytest.mark.parametrize(
    "key_ref",
    [
        "../x",
        "file:../x",
        "file:a/b",
        "file:.hidden",
        "file:",
        "pkcs11:token=ehrca;object=root",
        "x",
        "FILE:root.key.pem",
    ],
)
def test_bad_key_refs(tmp_path: Path, key_ref: str) -> None:
    with pytest.raises(KeyStoreError):
        FileKeyStore(tmp_path, PASSPHRASE).load_key(key_ref)


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden"])
def test_create_refuses_bad_names(tmp_path: Path, name: str) -> None:
    store = FileKeyStore(tmp_path / "keys", PASSPHRASE)
    with pytest.raises(KeyStoreError):
        store.create_key(name, KeyType.EC_P256)
    assert not (tmp_path / "escape.key.pem").exists()
    assert list((tmp_path / "keys").iterdir()) == []


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="passphrase"):
        FileKeyStore(tmp_path, b"")
