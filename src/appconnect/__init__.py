"""RingCentral App Connect connector server."""

__version__ = "0.1.0"
