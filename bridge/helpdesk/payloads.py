"""The webhook body, validated, turned into domain requests. Errors name the field."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.errors import PayloadInvalid


class Ticket(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=255)
    subject: str = Field(default="", max_length=500)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        # Helpdesks send numeric ids; both 42 and "42" name the same ticket.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: Literal["open", "close"]
    ticket: Ticket
    agent: str = Field(default="", max_length=320)
    customer: Customer = Customer()

    @field_validator("agent", mode="before")
    @classmethod
    def _agent(cls, value: Any) -> Any:
        if isinstance(value, dict):
            # Accept {"email": ...} or {"id": ...} as well as a plain string.
            return str(value.get("email") or value.get("id") or "")
        return value


def parse(body: bytes) -> WebhookBody:
    """Raises PayloadInvalid naming every bad or missing field."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = (
            f" (line {err.lineno}, column {err.colno})"
            if isinstance(err, json.JSONDecodeError)
            else ""
        )
        raise PayloadInvalid(f"The body is not valid JSON{where}.") from None
    if not isinstance(raw, dict):
        raise PayloadInvalid("The body must be a JSON object.")
    try:
        parsed = WebhookBody.model_validate(raw)
    except ValidationError as err:
        fields: list[str] = []
        problems: list[str] = []
        for error in err.errors():
            loc = ".".join(str(part) for part in error["loc"]) or "(body)"
            fields.append(loc)
            message = "is required" if error["type"] == "missing" else error["msg"].lower()
            problems.append(f"{loc} {message}")
        raise PayloadInvalid(
            "Invalid webhook body: " + "; ".join(problems) + ".", fields
        ) from None
    if parsed.event == "open" and not parsed.agent:
        raise PayloadInvalid(
            "Invalid webhook body: agent is required to open a session.", ["agent"]
        )
    return parsed
