"""ModelOps bundler: composes bundles from registered models (config + OCI 1.1 manifest),
checks every file blob is in the store, pushes, tags, records the bundle in KV and answers
with BundlePushed or BundleFailed.

Start it with `python -m modelops_bundler` or `modelops_bundler.app.serve(settings)`.
"""
