"""ModelOps bundler."""
