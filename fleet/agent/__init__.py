"""The Fleet agent: installs manifests on one instance, beside it, over HTTP.

`Installation` is the apply logic on a directory (no HTTP); `service` wraps it in
FastAPI; `client` speaks the API; `target` puts every way of reaching an instance
behind one `Target` interface.
"""
