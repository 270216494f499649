"""Salesforce (CRM), REST API: SOQL incremental reads and upserts by external id.

The stand-in server is :mod:`accord.sandbox.salesforce`.
"""

from accord.connectors.salesforce.connector import (
    API_VERSION,
    EXTERNAL_ID,
    READABLE,
    SalesforceConnector,
)

__all__ = ["API_VERSION", "EXTERNAL_ID", "READABLE", "SalesforceConnector"]
