"""The modelops command line."""
