"""The ingestion check: its rules, its poller, its webhook outbox and the project it asks about."""
