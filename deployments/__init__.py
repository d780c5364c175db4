"""Workspace set-up: the work pool, concurrency limits, block types, the
approval notification, and `serve()` for the embedded, no-worker set-up."""
