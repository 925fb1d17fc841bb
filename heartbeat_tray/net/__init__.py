"""Adapters for outgoing HTTP: one client with a deadline for each whole exchange."""
