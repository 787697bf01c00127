"""Test helpers: real test servers and the fixtures built on them."""
