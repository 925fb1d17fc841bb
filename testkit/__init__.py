"""Real stand-ins the tests and the benchmarks share: a loopback PostHog, a private keyring
session, a headless desktop with a tray host, a notification daemon. Not shipped with the app.
"""
