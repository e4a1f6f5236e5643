"""Revocation: revoke certificates, publish CRLs, answer revocation status for mTLS."""
