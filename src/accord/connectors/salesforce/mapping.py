"""Salesforce Account ⇄ canonical account, as pure functions.

Accord's canonical id travels in the external-id field ``Accord_Id__c``; the
ERP's customer id and status are written back to the custom fields
``ERP_Customer_Id__c`` and ``ERP_Status__c``, and the canonical status to
``Accord_Status__c``, so that sales sees what finance knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from accord.errors import InvalidInput

__all__ = [
    "ACCOUNT_FIELDS",
    "EXTERNAL_ID",
    "account_from_canonical",
    "account_to_canonical",
    "erp_writeback",
    "soql_datetime",
    "stamp",
]

EXTERNAL_ID = "Accord_Id__c"
ACCOUNT_FIELDS = (
    "Name",
    "ParentId",
    "Website",
    "CurrencyIsoCode",
    "Payment_Terms_Days__c",
    "Accord_Status__c",
    "ERP_Customer_Id__c",
    "ERP_Status__c",
    EXTERNAL_ID,
)
"""The Account fields the connector reads (besides ``Id`` and ``SystemModstamp``)."""


def stamp(value: str) -> str:
    """A Salesforce datetime as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC: text order is time order."""
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"not a Salesforce datetime: {value!r}", field="SystemModstamp"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def soql_datetime(cursor_value: str) -> str:
    """A cursor value as a SOQL datetime literal (unquoted, UTC)."""
    return stamp(cursor_value)


def account_from_canonical(
    account: Mapping[str, Any], *, parent_salesforce_id: str | None = None
) -> dict[str, Any]:
    """The Account fields for a canonical account (without ``Accord_Id__c``, which the
    connector puts in the upsert path)."""
    name = str(account.get("legal_name") or "").strip()
    if not name:
        raise InvalidInput("an account needs a legal name", record="Account", field="legal_name")
    fields: dict[str, Any] = {"Name": name}
    if account.get("domain"):
        fields["Website"] = str(account["domain"])
    if account.get("default_currency"):
        fields["CurrencyIsoCode"] = str(account["default_currency"]).upper()
    if account.get("payment_terms_days") is not None:
        fields["Payment_Terms_Days__c"] = int(account["payment_terms_days"])
    if account.get("status"):
        fields["Accord_Status__c"] = str(account["status"])
    if parent_salesforce_id:
        fields["ParentId"] = parent_salesforce_id
    return fields


def account_to_canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Salesforce Account as canonical account fields plus the references it carries."""
    terms = row.get("Payment_Terms_Days__c")
    return {
        "legal_name": row.get("Name"),
        "domain": row.get("Website"),
        "default_currency": row.get("CurrencyIsoCode"),
        "payment_terms_days": int(terms) if terms is not None else None,
        "status": row.get("Accord_Status__c"),
        "accord_id": row.get(EXTERNAL_ID),
        "salesforce_id": row.get("Id"),
        "parent_salesforce_id": row.get("ParentId"),
        "erp_customer_id": row.get("ERP_Customer_Id__c"),
        "erp_status": row.get("ERP_Status__c"),
    }


def erp_writeback(customer_id: str, status: str) -> dict[str, Any]:
    """The fields that write the ERP's customer id and status back onto the Account."""
    if not customer_id:
        raise InvalidInput("an ERP customer id is required", field="ERP_Customer_Id__c")
    return {"ERP_Customer_Id__c": customer_id, "ERP_Status__c": status}
