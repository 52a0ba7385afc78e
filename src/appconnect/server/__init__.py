"""The process model of `appconnect serve`: a thin supervisor, a one-off preflight, and the workers.

This package's `__init__` imports nothing: the supervisor must stay free of the application's libraries.
"""
