"""ModelOps runner."""
