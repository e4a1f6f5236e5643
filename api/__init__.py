"""The outside edge: settings, FastAPI app and routers, the mTLS listener and the CLI."""
