"""ModelOps submitter."""
