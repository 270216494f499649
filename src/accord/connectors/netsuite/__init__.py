"""NetSuite (ERP), SuiteTalk REST: token-based auth, SuiteQL reads, upserts by external id.

The stand-in server is :mod:`accord.sandbox.netsuite`.
"""

from accord.connectors.netsuite.connector import (
    MAX_PAGE,
    QUERY_PATH,
    RECORD_PATH,
    NetSuiteConnector,
    realm_of,
    record_type,
    suiteql,
)

__all__ = [
    "MAX_PAGE",
    "QUERY_PATH",
    "RECORD_PATH",
    "NetSuiteConnector",
    "realm_of",
    "record_type",
    "suiteql",
]
