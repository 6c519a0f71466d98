"""Where sealroom finds what it needs in a helpdesk's own JSON: the field mapping.

Each integration may name a `preset` (`bridge.helpdesk.presets`) and override any entry under
`fields:`. A path is a JSON pointer (`/ticket/owner/email`, RFC 6901) or a dotted path
(`ticket.owner.email`); a numeric step indexes a list. An entry may list several paths: the
first one present wins, except for `customer_name`, where every present part is joined with a
space (a first and a last name).

`event` says where the event is, and `open` / `close` / `reassign` which of its values mean
what (compared case-blind; `"*"` in `open` means "any value not listed under close or
reassign"). A reassign hands the ticket's live session to the agent it names (who is invited;
the answer carries a fresh link, as any re-open does) and never starts a session: without one it
is answered 404.

Every mapped value goes through the same model as sealroom's own body
(`bridge.helpdesk.payloads.WebhookBody`): the same text checks and length limits, with errors
naming the path in the helpdesk's JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from pydantic import field_validator

from bridge.config_fields import Section
from bridge.errors import PayloadInvalid

ANY = "*"
# Native fields of sealroom's own body, and the mapping entry that fills each.
FIELDS = ("event", "ticket_id", "subject", "agent", "customer_name", "customer_email")
_NATIVE_LOC = {
    "ticket.id": "ticket_id",
    "ticket.subject": "subject",
    "agent": "agent",
    "customer.name": "customer_name",
    "customer.email": "customer_email",
    "ticket": "ticket_id",
}
_DOTTED = re.compile(r"[^./\s][^.\s]*(?:\.[^.\s]+)*")
PATH_MAX = 200


def split_path(path: str) -> tuple[str, ...]:
    """A JSON pointer or dotted path as its steps.

    Raises:
        ValueError: not a path (empty, spaces in a dotted path, a bad ~ escape).
    """
    if not path or len(path) > PATH_MAX:
        raise ValueError(f"a path is 1 to {PATH_MAX} characters")
    if path.startswith("/"):
        steps = path[1:].split("/")
        if any(re.search(r"~(?![01])", step) for step in steps):
            raise ValueError(f"{path!r}: in a JSON pointer ~ is written ~0 and / is written ~1")
        return tuple(step.replace("~1", "/").replace("~0", "~") for step in steps)
    if not _DOTTED.fullmatch(path):
        raise ValueError(
            f"{path!r}: use a JSON pointer like /ticket/id or a dotted path like ticket.id"
        )
    return tuple(path.split("."))


def _paths(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    paths = [value] if isinstance(value, str) else value
    if not paths:
        raise ValueError("give a path, or a list of paths")
    for path in paths:
        split_path(path)
    return paths


class FieldsOptions(Section):
    """`integrations.<name>.fields`: each entry overrides the preset's (all optional here)."""

    event: str | list[str] | None = None
    ticket_id: str | list[str] | None = None
    subject: str | list[str] | None = None
    agent: str | list[str] | None = None
    customer_name: str | list[str] | None = None
    customer_email: str | list[str] | None = None
    open: list[str] | None = None
    close: list[str] | None = None
    reassign: list[str] | None = None

    @field_validator(*FIELDS, mode="after")
    @classmethod
    def _check_paths(cls, value: str | list[str] | None) -> str | list[str] | None:
        _paths(value)
        return value

    @field_validator("open", "close", "reassign")
    @classmethod
    def _values(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not item.strip() for item in value):
            raise ValueError("event values must not be empty")
        return value


@dataclass(frozen=True)
class FieldMap:
    """A complete mapping (a preset with the integration's overrides applied)."""

    event: tuple[str, ...]
    ticket_id: tuple[str, ...]
    subject: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()
    customer_name: tuple[str, ...] = ()
    customer_email: tuple[str, ...] = ()
    open: tuple[str, ...] = ("open",)
    close: tuple[str, ...] = ("close",)
    reassign: tuple[str, ...] = ("reassign",)

    def overridden(self, options: FieldsOptions | None) -> FieldMap:
        if options is None:
            return self
        changes: dict[str, tuple[str, ...]] = {}
        for name in (*FIELDS, "open", "close", "reassign"):
            value = getattr(options, name)
            if value is not None:
                changes[name] = tuple([value] if isinstance(value, str) else value)
        return replace(self, **changes)

    def problems(self) -> list[str]:
        """What is missing for a usable mapping, as "fields.<entry>: message"."""
        found = []
        if not self.event:
            found.append("fields.event: set the path of the event (or choose a preset)")
        if not self.ticket_id:
            found.append("fields.ticket_id: set the path of the ticket id (or choose a preset)")
        return found


@dataclass(frozen=True)
class Mapped:
    """What a mapped body asks for, in sealroom's own shape, and where each value came from."""

    native: dict[str, Any]
    source: dict[str, str]  # mapping entry -> the path the value was read at (or expected at)


def _step(node: Any, step: str) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and step.isdigit() and int(step) < len(node):
        return node[int(step)]
    return None


def lookup(data: Any, path: str) -> Any:
    node = data
    for step in split_path(path):
        node = _step(node, step)
        if node is None:
            return None
    return node


def _scalar(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = type(value).__name__.replace("dict", "an object").replace("list", "a list")
        raise PayloadInvalid(
            f"Invalid webhook body: {path} must be text or a whole number, not {kind}.", [path]
        )
    text = str(value)
    return text if text.strip() else None


def _read(data: Any, paths: tuple[str, ...], *, join: bool = False) -> tuple[str | None, str]:
    """The value at the first present path (or all present parts joined), and its path."""
    parts: list[tuple[str, str]] = []
    for path in paths:
        value = _scalar(lookup(data, path), path)
        if value is not None:
            parts.append((value, path))
            if not join:
                break
    if not parts:
        return None, " or ".join(paths)
    return " ".join(value for value, _ in parts), parts[0][1]


def apply(field_map: FieldMap, data: dict[str, Any]) -> Mapped:
    """sealroom's own body from a helpdesk's JSON.

    Raises:
        PayloadInvalid: a required value missing, a value of the wrong type, or an event value
            that means nothing here, each naming the path that was expected.
    """
    event_text, event_path = _read(data, field_map.event)
    ticket_id, ticket_path = _read(data, field_map.ticket_id)
    missing = [
        f"{path} is required ({what})"
        for value, path, what in (
            (event_text, event_path, "the event"),
            (ticket_id, ticket_path, "the ticket id"),
        )
        if value is None
    ]
    if missing:
        fields = [p for v, p in ((event_text, event_path), (ticket_id, ticket_path)) if v is None]
        raise PayloadInvalid("Invalid webhook body: " + "; ".join(missing) + ".", fields)
    assert event_text is not None
    event = _event(field_map, event_text, event_path)
    subject, subject_path = _read(data, field_map.subject)
    agent, agent_path = _read(data, field_map.agent)
    name, name_path = _read(data, field_map.customer_name, join=True)
    email, email_path = _read(data, field_map.customer_email)
    native: dict[str, Any] = {"event": event, "ticket": {"id": ticket_id}}
    if subject is not None:
        native["ticket"]["subject"] = subject
    if agent is not None:
        native["agent"] = agent
    customer = {k: v for k, v in (("name", name), ("email", email)) if v is not None}
    if customer:
        native["customer"] = customer
    source = {
        "event": event_path,
        "ticket_id": ticket_path,
        "subject": subject_path,
        "agent": agent_path,
        "customer_name": name_path,
        "customer_email": email_path,
    }
    return Mapped(native, source)


def _event(field_map: FieldMap, value: str, path: str) -> str:
    key = value.strip().casefold()

    def means(values: tuple[str, ...]) -> bool:
        return any(item.strip().casefold() == key for item in values)

    if means(field_map.close):
        return "close"
    if means(field_map.reassign):
        return "reassign"
    if means(field_map.open):
        return "open"
    if ANY in field_map.open:
        return "open"
    expected = [v for v in (*field_map.open, *field_map.close, *field_map.reassign) if v != ANY]
    raise PayloadInvalid(
        f"Invalid webhook body: {path} is {value[:60]!r}, which means nothing to sealroom "
        f"(expected one of {', '.join(repr(v) for v in expected)}).",
        [path],
    )


def native_path(source: dict[str, str], loc: str) -> str:
    """The helpdesk's path for an error that the native model reports at `loc`."""
    entry = _NATIVE_LOC.get(loc)
    return source.get(entry, loc) if entry else loc
