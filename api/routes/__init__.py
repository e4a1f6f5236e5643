"""Routers per audience (STYLE.md): applicants, officers, public PKI, mTLS."""
