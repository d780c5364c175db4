"""The pure core: every rule of Fleet, with no I/O and no clock (`now` is a parameter).

Modules, one noun each: `versions`, `channels`, `pins`, `advisories`,
`instances`, `state`, `plan`, `manifests`, `rollback`, `audit`, `errors`.
Nothing here imports sqlmodel, fastapi, prefect or httpx.
"""
