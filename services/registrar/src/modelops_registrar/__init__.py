"""ModelOps registrar."""
