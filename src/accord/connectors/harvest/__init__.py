"""Harvest (time tracking and expenses), API v2: polling reads and safe writes.

No webhooks: Harvest API v2 declares none, so changes are read incrementally.
The stand-in server is :mod:`accord.sandbox.harvest`.
"""

from accord.connectors.harvest.connector import (
    DEFAULT_BASE_URL,
    READABLE,
    WRITABLE,
    HarvestConnector,
)

__all__ = ["DEFAULT_BASE_URL", "READABLE", "WRITABLE", "HarvestConnector"]
