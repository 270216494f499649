"""Reconciliation: find every drift between two systems, and heal it.

The engine (:mod:`accord.reconcile.engine`) hash-compares two sides of keyed
records; :mod:`~accord.reconcile.pairs` names the system pairs and
:mod:`~accord.reconcile.heal` turns each discrepancy into a fix under the
ownership policy; :mod:`~accord.reconcile.run` stores a run and
:mod:`~accord.reconcile.files` compares two exports. See
``docs/reconciliation.md``.

Nothing is imported here, so that reading the configuration (which validates
the ``reconcile:`` section through :mod:`accord.reconcile.settings`) stays light.
"""
