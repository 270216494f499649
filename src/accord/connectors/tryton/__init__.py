"""Tryton (``trytond`` 8.x), the first real ERP/PSA peer, over JSON-RPC.

See :mod:`accord.connectors.tryton.connector` for what is covered and
:mod:`accord.connectors.tryton.mapping` for the fields and stored references.
"""

from accord.connectors.tryton.connector import TrytonConnector, TrytonRpcError

__all__ = ["TrytonConnector", "TrytonRpcError"]
