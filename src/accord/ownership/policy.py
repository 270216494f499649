"""The ownership policy: which system is the source of record for each field.

Accord keeps several systems in agreement, and agreement needs a referee: for
every object type and every field, exactly one system's word counts. The policy
says which. It is data, written in YAML by the people who run the integration,
so this module turns that YAML into a validated, immutable
:class:`OwnershipPolicy` — or refuses it whole with a :class:`PolicyError` that
names the key path and the line, because a half-understood ownership rule would
silently let the wrong system overwrite customer or financial data.

The YAML lives under one ``ownership:`` key, so the same text can be a file of
its own or the ``ownership:`` section of ``accord.yaml``::

    ownership:
      systems:                 # role -> the concrete system that plays it
        crm: salesforce
        erp: xero
      account:
        owner: crm             # owns every field not listed below
        fields:
          legal_name: crm
          payment_terms_days: {owner: erp, mode: review}

Owners are written as roles (``erp``) so that a policy survives swapping Xero
for NetSuite; a concrete system name (``xero``) is accepted too. Either way the
loaded policy speaks in concrete system names, the names connectors and the
xref table use.

Reading the YAML text is the caller's job (the composition root reads files);
the one exception is :func:`default_policy`, which reads the policy shipped
inside this package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

from accord.errors import InvalidInput

__all__ = [
    "ID_FIELD",
    "FieldRule",
    "Mode",
    "ObjectPolicy",
    "OwnershipPolicy",
    "PolicyError",
    "default_policy",
    "load_policy",
    "parse_policy",
]

#: Accord's own key of every canonical record. It belongs to no system, so it is
#: never given an owner, never applied, never written out.
ID_FIELD = "id"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SYSTEM = re.compile(r"^[a-z][a-z0-9_-]*$")
_OBJECT_KEYS = ("owner", "mode", "fields")
_FIELD_KEYS = ("owner", "mode")

Path = tuple[str, ...]


class Mode(StrEnum):
    """What reconciliation may do when a system drifts from the owner's value."""

    AUTO = "auto"
    """Heal: write the owner's value into the drifted system without asking."""

    REVIEW = "review"
    """Queue the discrepancy for a person; used where a wrong write costs money."""


class PolicyError(InvalidInput):
    """An ownership policy that cannot be used as written.

    ``path`` is the dotted key path (``ownership.account.fields.payment_terms``)
    and ``line`` the 1-based YAML line when the policy came from text, so the
    message points at the one place to fix, compiler style::

        accord.yaml:12: ownership.account.fields.payment_terms: unknown system 'erpx' ...
    """

    def __init__(
        self, message: str, *, path: str, line: int | None = None, source: str | None = None
    ) -> None:
        super().__init__(message, record=path)
        self.path = path
        self.line = line
        self.source = source

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.source and self.line is not None:
            return f"{self.source}:{self.line}: {text}"
        if self.line is not None:
            return f"line {self.line}: {text}"
        return f"{self.source}: {text}" if self.source else text


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Who owns one field, and how reconciliation treats drift in it."""

    owner: str
    """Concrete name of the system whose value wins (``salesforce``, not ``crm``)."""

    mode: Mode = Mode.AUTO
    """Whether reconciliation heals drift in this field itself or asks a person."""


@dataclass(frozen=True, slots=True)
class ObjectPolicy:
    """Ownership of one object type: a default owner plus per-field exceptions."""

    entity_type: str
    """Canonical entity name in snake case (``account``, ``time_entry``)."""

    default: FieldRule
    """Rule for every field not listed in :attr:`fields`."""

    fields: Mapping[str, FieldRule] = field(default_factory=lambda: MappingProxyType({}))
    """Per-field rules that differ from or restate the default."""

    def rule(self, field_name: str) -> FieldRule:
        """The rule for ``field_name``; unlisted fields follow the default."""
        return self.fields.get(field_name, self.default)


@dataclass(frozen=True, slots=True)
class OwnershipPolicy:
    """A validated ownership policy; build it with :func:`load_policy` or :func:`parse_policy`."""

    systems: Mapping[str, str]
    """Role (``crm``, ``psa``, ``erp``, ``billing``, …) -> concrete system name.
    One system may play several roles (Tryton as both PSA and ERP)."""

    objects: Mapping[str, ObjectPolicy]
    """Entity type -> its ownership rules."""

    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # asked for every field of every change: worked out once
        object.__setattr__(self, "_names", frozenset(self.systems.values()))

    @property
    def system_names(self) -> frozenset[str]:
        """Every concrete system the policy knows."""
        return self._names

    def object(self, entity_type: str) -> ObjectPolicy:
        """The rules of ``entity_type``.

        An entity type the policy does not cover is refused rather than given a
        guessed owner: ownership must be decided by a person, once, in the policy.
        """
        try:
            return self.objects[entity_type]
        except KeyError:
            known = ", ".join(sorted(self.objects)) or "none"
            raise InvalidInput(
                f"no ownership rules for entity type {entity_type!r} (known: {known})",
                record="ownership",
                field=entity_type,
            ) from None

    def rule(self, entity_type: str, field_name: str) -> FieldRule:
        """The rule for one field of one entity type."""
        return self.object(entity_type).rule(field_name)

    def owner_of(self, entity_type: str, field_name: str) -> str:
        """Concrete name of the system that owns ``entity_type.field_name``."""
        return self.rule(entity_type, field_name).owner

    def mode_of(self, entity_type: str, field_name: str) -> Mode:
        """How reconciliation treats drift in ``entity_type.field_name``."""
        return self.rule(entity_type, field_name).mode

    def check_system(self, system: str) -> str:
        """Return ``system`` if the policy knows it, else raise :class:`InvalidInput`.

        A change from (or a write to) a system the policy never heard of is a
        wiring mistake; treating it as "owns nothing" would bury that mistake
        under a pile of conflicts.
        """
        if system not in self.system_names:
            known = ", ".join(sorted(self.system_names))
            raise InvalidInput(
                f"unknown system {system!r} (known: {known})", record="ownership", field=system
            )
        return system


# -- parsing ----------------------------------------------------------------------


@dataclass(slots=True)
class _Parser:
    lines: Mapping[Path, int]
    source: str | None

    def fail(self, path: Path, message: str) -> PolicyError:
        return PolicyError(message, path=".".join(path), line=self._line(path), source=self.source)

    def _line(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def mapping(self, value: Any, path: Path) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be text, got {_kind(key)} {key!r}")
        return value

    def name(self, value: str, path: Path, what: str) -> str:
        if not _NAME.match(value):
            raise self.fail(
                path, f"{what} {value!r} must be lower case letters, digits and underscores"
            )
        return value

    def policy(self, document: Any) -> OwnershipPolicy:
        root = self.mapping(document, ())
        if "ownership" not in root:
            raise self.fail((), "missing the 'ownership' key")
        section = self.mapping(root["ownership"], ("ownership",))
        if "systems" not in section:
            raise self.fail(("ownership",), "missing 'systems' (role -> system name)")
        systems = self.systems(section["systems"], ("ownership", "systems"))
        objects: dict[str, ObjectPolicy] = {}
        for entity_type, spec in section.items():
            if entity_type == "systems":
                continue
            path = ("ownership", entity_type)
            self.name(entity_type, path, "entity type")
            objects[entity_type] = self.object(entity_type, spec, systems, path)
        return OwnershipPolicy(
            systems=MappingProxyType(dict(systems)), objects=MappingProxyType(objects)
        )

    def systems(self, value: Any, path: Path) -> dict[str, str]:
        spec = self.mapping(value, path)
        if not spec:
            raise self.fail(path, "declare at least one role, e.g. 'crm: salesforce'")
        systems: dict[str, str] = {}
        for role, system in spec.items():
            here = (*path, role)
            self.name(role, here, "role")
            if not isinstance(system, str) or not _SYSTEM.match(system):
                raise self.fail(
                    here,
                    f"expected a system name (lower case, e.g. 'salesforce'), got {system!r}",
                )
            systems[role] = system
        for role, system in systems.items():
            if system in systems and systems[system] != system and system != role:
                raise self.fail(
                    (*path, role),
                    f"system name {system!r} is also a role that means {systems[system]!r}",
                )
        return systems

    def owner(self, value: Any, systems: Mapping[str, str], path: Path) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a system or role name, got {_kind(value)}")
        if value in systems:
            return systems[value]
        if value in systems.values():
            return value
        known = ", ".join(sorted({*systems, *systems.values()}))
        raise self.fail(path, f"unknown system {value!r} (known: {known})")

    def mode(self, value: Any, path: Path) -> Mode:
        try:
            return Mode(value)
        except ValueError:
            choices = " or ".join(m.value for m in Mode)
            raise self.fail(path, f"unknown mode {value!r}; expected {choices}") from None

    def keys(self, spec: Mapping[str, Any], allowed: tuple[str, ...], path: Path) -> None:
        for key in spec:
            if key not in allowed:
                raise self.fail(
                    (*path, key), f"unknown key {key!r}; expected one of {', '.join(allowed)}"
                )

    def object(
        self, entity_type: str, value: Any, systems: Mapping[str, str], path: Path
    ) -> ObjectPolicy:
        spec = self.mapping(value, path)
        self.keys(spec, _OBJECT_KEYS, path)
        if "owner" not in spec:
            raise self.fail(path, "missing 'owner' (the system that owns unlisted fields)")
        default = FieldRule(
            owner=self.owner(spec["owner"], systems, (*path, "owner")),
            mode=self.mode(spec["mode"], (*path, "mode")) if "mode" in spec else Mode.AUTO,
        )
        fields: dict[str, FieldRule] = {}
        if "fields" in spec:
            fields_path = (*path, "fields")
            for name, rule in self.mapping(spec["fields"], fields_path).items():
                here = (*fields_path, name)
                self.name(name, here, "field")
                if name == ID_FIELD:
                    raise self.fail(here, "'id' is Accord's own key; no system owns it")
                fields[name] = self.field_rule(rule, default, systems, here)
        return ObjectPolicy(
            entity_type=entity_type, default=default, fields=MappingProxyType(fields)
        )

    def field_rule(
        self, value: Any, default: FieldRule, systems: Mapping[str, str], path: Path
    ) -> FieldRule:
        if isinstance(value, str):
            return FieldRule(owner=self.owner(value, systems, path), mode=default.mode)
        if not isinstance(value, Mapping):
            raise self.fail(
                path, f"expected a system name or {{owner: ..., mode: ...}}, got {_kind(value)}"
            )
        spec = self.mapping(value, path)
        self.keys(spec, _FIELD_KEYS, path)
        return FieldRule(
            owner=self.owner(spec["owner"], systems, (*path, "owner"))
            if "owner" in spec
            else default.owner,
            mode=self.mode(spec["mode"], (*path, "mode")) if "mode" in spec else default.mode,
        )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def parse_policy(
    document: Mapping[str, Any],
    *,
    lines: Mapping[tuple[str, ...], int] | None = None,
    source: str | None = None,
) -> OwnershipPolicy:
    """Validate an already-loaded document that holds an ``ownership:`` key.

    Other top-level keys are left alone, so the whole of ``accord.yaml`` may be
    passed. ``lines`` maps key paths to YAML lines (as :func:`load_policy`
    builds it); without it errors name the key path only.
    """
    return _Parser(lines or {}, source).policy(document)


def load_policy(text: str, *, source: str | None = None) -> OwnershipPolicy:
    """Parse YAML text and validate the policy in it.

    ``source`` (a file name) is only used in error messages.
    """
    document, lines = _load_yaml(text, source)
    return parse_policy(document, lines=lines, source=source)


@cache
def default_policy() -> OwnershipPolicy:
    """The policy shipped with Accord (``default_policy.yaml``), for a PS firm.

    Reads a file inside the installed package, once; a deployment copies it into
    ``accord.yaml`` and edits the system names.
    """
    resource = resources.files("accord.ownership").joinpath("default_policy.yaml")
    return load_policy(resource.read_text(encoding="utf-8"), source="default_policy.yaml")


# -- YAML with line numbers ---------------------------------------------------------


def _load_yaml(text: str, source: str | None) -> tuple[Any, dict[Path, int]]:
    """Load one YAML document and note the line of every mapping key path.

    Composing the node tree first keeps the marks that plain ``safe_load``
    throws away; the same tree is then constructed into Python values.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the policy is empty", path="", line=1, source=source)
        lines: dict[Path, int] = {(): node.start_mark.line + 1}
        _note_lines(node, (), lines, source)
        document = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise PolicyError(
            f"not valid YAML: {problem}",
            path="",
            line=mark.line + 1 if mark is not None else None,
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}", path="", source=source) from None
    finally:
        loader.dispose()
    return document, lines


def _note_lines(node: yaml.Node, path: Path, lines: dict[Path, int], source: str | None) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a complex key; the validator reports it with its parent's line
            key = str(key_node.value)
            here = (*path, key)
            if key in seen:
                raise PolicyError(
                    f"duplicate key {key!r}",
                    path=".".join(here),
                    line=key_node.start_mark.line + 1,
                    source=source,
                )
            seen.add(key)
            lines[here] = key_node.start_mark.line + 1
            _note_lines(value_node, here, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _note_lines(item, (*path, str(index)), lines, source)
