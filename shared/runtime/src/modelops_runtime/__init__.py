"""ModelOps runtime plumbing shared by services and the CLI."""
