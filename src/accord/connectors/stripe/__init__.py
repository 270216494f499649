"""Stripe: incremental reads from events, signed webhooks, idempotent writes.

The connector is :class:`StripeConnector`; :mod:`accord.connectors.stripe.mapping`
holds the pure canonical ⇄ Stripe functions; the stand-in server it is tested
against is :class:`accord.sandbox.stripe.StripeStandIn`.
"""

from accord.connectors.stripe.connector import API_VERSION, StripeConnector, encode_form

__all__ = ["API_VERSION", "StripeConnector", "encode_form"]
