"""Driver for the django-ca peer figures; runs inside django-ca's own virtualenv (made by
``bench/peers.py`` under a cache directory, never the project's), not in ehrca's.

``python peer_django_ca.py DIRECTORY ISSUE_COUNT ISSUE_SECONDS CRL_SIZE RUNS`` prints one
JSON line: ``issue_per_s`` (samples: certificates per second through
``Certificate.objects.create_cert`` with the ``client`` profile from P-256 CSRs,
SQLite, each certificate saved) and ``crl_s`` (samples: seconds of
``CertificateRevocationList.objects.create_certificate_revocation_list`` with
``CRL_SIZE`` revoked certificates, loaded with ``bulk_create``).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    directory = Path(sys.argv[1])
    issue_count, issue_seconds = int(sys.argv[2]), float(sys.argv[3])
    crl_size, runs = int(sys.argv[4]), int(sys.argv[5])

    import django
    from django.conf import settings

    # django-ca reverses its URLs (CRL and issuer URLs in certificates): a URLconf.
    (directory / "bench_django_ca_urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("django_ca/", include("django_ca.urls"))]\n'
    )
    sys.path.insert(0, str(directory))

    settings.configure(
        SECRET_KEY="bench-not-secret",
        USE_TZ=True,
        ROOT_URLCONF="bench_django_ca_urls",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_object_actions",
            "django_ca",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(directory / "db.sqlite3"),
            }
        },
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "django-ca": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(directory / "files")},
            },
        },
        CA_KEY_BACKENDS={
            "default": {"BACKEND": "django_ca.key_backends.db.DBBackend", "OPTIONS": {}}
        },
        CA_DEFAULT_HOSTNAME="ca.example.org",
        CA_USE_CELERY=False,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from django_ca.key_backends import key_backends
    from django_ca.models import Certificate, CertificateAuthority, CertificateRevocationList
    from django_ca.profiles import profiles

    now = dt.datetime.now(dt.UTC)
    backend: Any = key_backends["default"]
    create_options = backend.get_create_private_key_options("EC", None, "secp256r1", {})
    ca = CertificateAuthority.objects.init(
        name="bench",
        key_backend=backend,
        key_backend_options=create_options,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")]),
        not_after=now + dt.timedelta(days=3650),
        key_type="EC",
        path_length=0,
    )
    use = backend.get_use_private_key_options(ca, {})
    csrs = []
    for i in range(64):
        key = ec.generate_private_key(ec.SECP256R1())
        csrs.append(
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench{i}")]))
            .sign(key, hashes.SHA256())
        )
    profile = profiles["client"]

    def issue(i: int) -> Certificate:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Harbour Family Medicine"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"HCP-BENCH-L{i}"),
            ]
        )
        return Certificate.objects.create_cert(
            ca, use, csrs[i % len(csrs)], profile=profile, subject=subject, allow_empty_subject=True
        )

    issue(0)  # warm-up
    issue_samples = []
    n = 1
    for _ in range(runs):
        done = 0
        start = time.perf_counter()
        deadline = start + issue_seconds
        while done < issue_count and time.perf_counter() < deadline:
            issue(n)
            n += 1
            done += 1
        issue_samples.append(done / (time.perf_counter() - start))

    template = Certificate.objects.order_by("pk").first()
    assert template is not None
    fields = {
        f.attname: getattr(template, f.attname)
        for f in Certificate._meta.concrete_fields
        if f.attname not in ("id", "serial", "created", "updated")
    }
    reasons = ["key_compromise", "superseded", "cessation_of_operation", "unspecified"]
    batch = []
    for i in range(crl_size):
        serial = f"{secrets.randbits(158) | (1 << 157):X}"
        row = Certificate(**{**fields, "serial": serial})
        row.revoked = True
        row.revoked_date = now - dt.timedelta(minutes=1)
        row.revoked_reason = reasons[i % len(reasons)]
        batch.append(row)
        if len(batch) == 10_000:
            Certificate.objects.bulk_create(batch)
            batch = []
    if batch:
        Certificate.objects.bulk_create(batch)
    crl_samples = []
    for _ in range(runs):
        start = time.perf_counter()
        crl = CertificateRevocationList.objects.create_certificate_revocation_list(ca, use)
        crl_samples.append(time.perf_counter() - start)
        if sum(crl_samples) > 30:
            break
    entries = len(x509.load_der_x509_crl(bytes(crl.data)))
    print(
        json.dumps(
            {
                "issue_per_s": issue_samples,
                "crl_s": crl_samples,
                "crl_entries": entries,
                "certificates_issued": n,
            }
        )
    )


if __name__ == "__main__":
    main()
