"""System-of-record rules: who owns each field, and what to do with a change.

The policy (:mod:`accord.ownership.policy`) says, per object type and field,
which system's value wins. :func:`decide` sorts an incoming change into fields
to apply, ``ownership_conflict`` exceptions and echoes of Accord's own writes;
:func:`outbound` says what to write to each system so it agrees. Everything
here is pure: the echo memory is a port (:class:`EchoMemory`) whose storage the
caller provides, and nothing reads files except :func:`default_policy`, which
reads the policy shipped in this package. See ``docs/ownership.md``.
"""

from __future__ import annotations

from accord.ownership.decide import (
    Decision,
    EchoKey,
    EchoMemory,
    FieldChange,
    FieldSync,
    InMemoryEchoMemory,
    OwnershipConflict,
    decide,
    digest,
    forget_outbound,
    outbound,
    record_inbound,
    record_outbound,
)
from accord.ownership.policy import (
    ID_FIELD,
    FieldRule,
    Mode,
    ObjectPolicy,
    OwnershipPolicy,
    PolicyError,
    default_policy,
    load_policy,
    parse_policy,
)

__all__ = [
    "ID_FIELD",
    "Decision",
    "EchoKey",
    "EchoMemory",
    "FieldChange",
    "FieldRule",
    "FieldSync",
    "InMemoryEchoMemory",
    "Mode",
    "ObjectPolicy",
    "OwnershipConflict",
    "OwnershipPolicy",
    "PolicyError",
    "decide",
    "default_policy",
    "digest",
    "forget_outbound",
    "load_policy",
    "outbound",
    "parse_policy",
    "record_inbound",
    "record_outbound",
]
