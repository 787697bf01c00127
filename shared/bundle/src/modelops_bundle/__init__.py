"""ModelOps bundles: file hashing, registry.yaml, OCI push/pull, verified materialization."""
