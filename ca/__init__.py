"""The certificate authority core: key store, hierarchy, profiles, serials, signing, linting.

Pure builders (``build_*``) never touch the database or the key store; services
(``ca.service``) combine them with storage. Nothing here reads settings: callers
pass a :class:`ca.config.CAConfig`.
"""
