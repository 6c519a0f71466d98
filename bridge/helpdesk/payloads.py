"""The webhook body, validated, turned into domain requests. Errors name the field.

Length limits are the store's column sizes (`store.limits`), so whatever passes here fits on
SQLite and PostgreSQL alike; text rules (`bridge.untrusted.text_problem`) keep NUL and invisible
characters out of identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from store.limits import AGENT_REF_MAX, SUBJECT_MAX, TICKET_REF_MAX

from bridge.errors import PayloadInvalid
from bridge.helpdesk import mapping
from bridge.helpdesk.mapping import FieldMap
from bridge.untrusted import loads_object, text_problem

# Customer details are read but never stored: their limits need no column to match.
CUSTOMER_NAME_MAX = 255
CUSTOMER_EMAIL_MAX = 320


def _identifier(value: str) -> str:
    problem = text_problem(value, identifier=True)
    if problem:
        raise ValueError(problem)
    return value


def _free_text(value: str) -> str:
    problem = text_problem(value, identifier=False)
    if problem:
        raise ValueError(problem)
    return value


def _optional_identifier(value: str | None) -> str | None:
    return None if value is None else _identifier(value)


def _optional_free_text(value: str | None) -> str | None:
    return None if value is None else _free_text(value)


class Ticket(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=TICKET_REF_MAX)
    subject: str = Field(default="", max_length=SUBJECT_MAX)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        # Helpdesks send numeric ids; both 42 and "42" name the same ticket.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    _id = field_validator("id")(_identifier)
    _subject = field_validator("subject")(_free_text)


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=CUSTOMER_NAME_MAX)
    email: str | None = Field(default=None, max_length=CUSTOMER_EMAIL_MAX)

    _name = field_validator("name")(_optional_free_text)
    _email = field_validator("email")(_optional_identifier)


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: Literal["open", "close", "reassign"]
    ticket: Ticket
    agent: str = Field(default="", max_length=AGENT_REF_MAX)
    customer: Customer = Customer()

    @field_validator("agent", mode="before")
    @classmethod
    def _agent(cls, value: Any) -> Any:
        if isinstance(value, dict):
            # Accept {"email": ...} or {"id": ...} as well as a plain string.
            for key in ("email", "id"):
                inner = value.get(key)
                if isinstance(inner, int) and not isinstance(inner, bool):
                    return str(inner)
                if isinstance(inner, str) and inner:
                    return inner
            return ""
        return value

    _agent_text = field_validator("agent")(_identifier)


def _describe(error: Any) -> str:
    if error["type"] == "missing":
        return "is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


@dataclass(frozen=True)
class Parsed:
    """A webhook body in sealroom's terms, and where in the sender's JSON each value was."""

    body: WebhookBody
    sources: dict[str, str]

    def path_of(self, entry: str) -> str:
        """The sender's path for a mapping entry ("agent", "ticket_id", ...)."""
        return self.sources.get(entry, entry)


_OWN_SOURCES = {
    "event": "event",
    "ticket_id": "ticket.id",
    "subject": "ticket.subject",
    "agent": "agent",
    "customer_name": "customer.name",
    "customer_email": "customer.email",
}


def parse(body: bytes) -> WebhookBody:
    """sealroom's own body. Raises PayloadInvalid naming every bad or missing field."""
    return read(body).body


def read(body: bytes, field_map: FieldMap | None = None) -> Parsed:
    """sealroom's own body, or with `field_map` a helpdesk's JSON read through it.

    Raises:
        PayloadInvalid: naming every bad or missing field (as the sender's paths).
    """
    raw = loads_object(body)
    sources = dict(_OWN_SOURCES)
    if field_map is not None:
        mapped = mapping.apply(field_map, raw)
        raw, sources = mapped.native, mapped.source
    try:
        parsed = WebhookBody.model_validate(raw)
    except ValidationError as err:
        fields: list[str] = []
        problems: list[str] = []
        for error in err.errors():
            loc = ".".join(str(part) for part in error["loc"]) or "(body)"
            if field_map is not None:
                loc = mapping.native_path(sources, loc)
            if loc not in fields:
                fields.append(loc)
                problems.append(f"{loc} {_describe(error)}")
        raise PayloadInvalid(
            "Invalid webhook body: " + "; ".join(problems) + ".", fields
        ) from None
    if parsed.event in ("open", "reassign") and not parsed.agent:
        agent = sources["agent"]
        raise PayloadInvalid(
            f"Invalid webhook body: {agent} is required to open a session.", [agent]
        )
    return Parsed(parsed, sources)
