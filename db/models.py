"""Import every package's models so ``Base.metadata`` is complete (for Alembic)."""

from ca import audit as ca_audit
from ca import blocklist as ca_blocklist
from ca import models as ca_models
from db.base import Base
from issuance import models as issuance_models
from registration import models as registration_models
from registration import staff_models as registration_staff_models
from revocation import models as revocation_models

__all__ = [
    "Base",
    "ca_audit",
    "ca_blocklist",
    "ca_models",
    "issuance_models",
    "registration_models",
    "registration_staff_models",
    "revocation_models",
]
