"""Adapters from the submitter's ports to NATS/JetStream and the bundle store."""
