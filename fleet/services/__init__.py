"""Fleet's use cases, shared by the CLI, the API and the Prefect tasks.

Each use case is one database transaction and appends its audit events in
that same transaction: a change is stored with its audit record or not at
all. Every function takes the engine as a keyword (default: the one for the
settings' database URL) and the time as `now` (default: the clock).
"""
