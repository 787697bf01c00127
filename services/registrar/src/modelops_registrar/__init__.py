"""ModelOps registrar: validates RegisterModel and keeps each project's model registry in
JetStream KV (revisioned, compare-and-set), answering with ModelRegistered or CommandRejected.

Start it with `python -m modelops_registrar` or `modelops_registrar.app.serve(settings)`.
"""
