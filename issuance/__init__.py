"""Issuance: download codes, CSR checks, server-side keys and PKCS#12, collection, mail."""
