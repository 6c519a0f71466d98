"""Helpdesk payloads for the tests: the vendors' fixed payloads (tests/vectors/helpdesks/) and
the bodies admins paste, read from docs/helpdesks/*.md and filled in as the helpdesk would."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "helpdesks"
VECTORS = ROOT / "tests" / "vectors" / "helpdesks"

# Values of the vendors' documentation examples, for the placeholders of the pasted bodies.
# Zendesk: ticket 35436 "Help, my printer is on fire!" is the ticket of Zendesk's Tickets API
# examples. Freshdesk: "Support Needed..." / tom@outerspace.com are from Freshdesk's API v2
# "Create a ticket" example.
ZENDESK_VALUES = {
    "ticket.id": "35436",
    "ticket.title": "Help, my printer is on fire!",
    "ticket.assignee.email": "agent@example.com",
    "ticket.assignee.id": "235323",
    "ticket.requester.name": "Jane Customer",
    "ticket.requester.email": "jane@example.com",
}
FRESHDESK_VALUES = {
    "triggered_event": "{Tag: added}",
    "ticket.id": "1",
    "ticket.subject": "Support Needed...",
    "ticket.status": "Open",
    "ticket.agent.email": "agent@example.com",
    "ticket.requester.name": "Tom Outerridge",
    "ticket.requester.email": "tom@outerspace.com",
}


def template(helpdesk: str, marker: str) -> str:
    """The JSON block after `<!-- body:<marker> -->` in docs/helpdesks/<helpdesk>.md."""
    text = (DOCS / f"{helpdesk}.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- body:{re.escape(marker)} -->\s*```json\n(.*?)\n```", text, re.DOTALL)
    assert match, f"docs/helpdesks/{helpdesk}.md has no body:{marker} block"
    return match.group(1)


def render(text: str, values: dict[str, str]) -> dict[str, Any]:
    """Fill `{{placeholder}}`s as the helpdesk does (inside JSON strings), then parse."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        assert name in values, f"no example value for {{{{{name}}}}}"
        return json.dumps(values[name])[1:-1]

    data: dict[str, Any] = json.loads(re.sub(r"\{\{([^}]+)\}\}", fill, text))
    return data


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return copy.deepcopy(data)
