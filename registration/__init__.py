"""Registration: applications and their five steps, documents, officer review, accounts."""
