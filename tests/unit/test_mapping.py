"""Field mapping and presets: each helpdesk's real payload read into sealroom's terms, and every
missing, mistyped or hostile value answered with a 400 that names the path in *its* JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import PayloadInvalid
from bridge.helpdesk import payloads
from bridge.helpdesk.mapping import FieldMap, FieldsOptions, split_path
from bridge.helpdesk.presets import PRESETS
from store.limits import SUBJECT_MAX, TICKET_REF_MAX
from tests.support import helpdesks


def read(preset: str, data: dict[str, Any], **overrides: Any) -> payloads.Parsed:
    field_map = PRESETS[preset]
    if overrides:
        field_map = field_map.overridden(FieldsOptions(**overrides))
    return payloads.read(json.dumps(data).encode(), field_map)


def refused(preset: str, data: Any, **overrides: Any) -> PayloadInvalid:
    with pytest.raises(PayloadInvalid) as info:
        read(preset, data, **overrides)
    return info.value


# -- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("/ticket/id", ("ticket", "id")),
        ("ticket.id", ("ticket", "id")),
        ("/a~1b/c~0d", ("a/b", "c~d")),
        ("/items/0/name", ("items", "0", "name")),
        ("/", ("",)),
    ],
)
def test_paths_are_json_pointers_or_dotted(path: str, steps: tuple[str, ...]) -> None:
    assert split_path(path) == steps


@pytest.mark.parametrize("path", ["", "ticket id", ".ticket", "ticket..id", "/a~2", "x" * 201])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="."):
        split_path(path)


# -- the presets with their vendors' payloads ---------------------------------------------------


def test_zammad_default_payload_opens_and_closes() -> None:
    data = helpdesks.vector("zammad-default-payload.json")

    parsed = read("zammad", data)
    assert parsed.body.event == "open"
    assert parsed.body.ticket.id == "10081"
    assert parsed.body.ticket.subject == "Webhook-Test"
    assert parsed.body.agent == "emma@chrispresso.com"
    assert parsed.body.customer.name == "Emily Adams"
    assert parsed.body.customer.email == "emily@example.com"
    for state in ("closed", "merged"):
        data["ticket"]["state"] = state
        assert read("zammad", data).body.event == "close"
    data["ticket"]["state"] = "pending reminder"
    assert read("zammad", data).body.event == "open"


def test_zammad_without_an_owner_email_falls_back_to_the_login() -> None:
    data = helpdesks.vector("zammad-default-payload.json")
    del data["ticket"]["owner"]["email"]

    assert read("zammad", data).body.agent == "emma@chrispresso.com"


def test_zendesk_trigger_bodies_from_the_docs() -> None:
    opened = helpdesks.render(helpdesks.template("zendesk", "open"), helpdesks.ZENDESK_VALUES)
    closed = helpdesks.render(helpdesks.template("zendesk", "close"), helpdesks.ZENDESK_VALUES)

    parsed = read("zendesk", opened)
    assert (parsed.body.event, parsed.body.ticket.id) == ("open", "35436")
    assert parsed.body.ticket.subject == "Help, my printer is on fire!"
    assert parsed.body.agent == "agent@example.com"
    assert parsed.body.customer.email == "jane@example.com"
    assert read("zendesk", {**opened, "event": "reassign"}).body.event == "reassign"
    assert read("zendesk", closed).body.event == "close"


def test_zendesk_without_an_assignee_email_sends_the_id_and_without_either_is_400() -> None:
    values = {**helpdesks.ZENDESK_VALUES, "ticket.assignee.email": ""}
    opened = helpdesks.render(helpdesks.template("zendesk", "open"), values)
    assert read("zendesk", opened).body.agent == "235323"

    values["ticket.assignee.id"] = ""
    error = refused("zendesk", helpdesks.render(helpdesks.template("zendesk", "open"), values))
    assert error.fields == ["/ticket/assignee/email or /ticket/assignee/id"]
    assert "required to open" in error.message


def test_freshdesk_automation_body_from_the_docs() -> None:
    text = helpdesks.template("freshdesk", "open")
    parsed = read("freshdesk", helpdesks.render(text, helpdesks.FRESHDESK_VALUES))

    assert (parsed.body.event, parsed.body.ticket.id) == ("open", "1")
    assert parsed.body.ticket.subject == "Support Needed..."
    assert parsed.body.customer.name == "Tom Outerridge"
    for status in ("Resolved", "closed"):
        values = {**helpdesks.FRESHDESK_VALUES, "ticket.status": status}
        assert read("freshdesk", helpdesks.render(text, values)).body.event == "close"


def test_jira_issue_data_automation_format() -> None:
    data = helpdesks.vector("jsm-issue-automation-format.json")

    parsed = read("jira-service-management", data)
    assert (parsed.body.event, parsed.body.ticket.id) == ("open", "SP-53")
    assert parsed.body.agent == "mia@example.com"
    data["fields"]["assignee"].pop("emailAddress")  # as Jira Cloud usually sends it
    assert read("jira-service-management", data).body.agent == "5b10a2844c20165700ede21g"
    data["fields"]["status"]["statusCategory"]["key"] = "done"
    assert read("jira-service-management", data).body.event == "close"


def test_the_sealroom_preset_reads_sealroom_s_own_body_as_before() -> None:
    body = {"event": "open", "ticket": {"id": 4711}, "agent": {"id": 42}}

    assert read("sealroom", body).body.agent == "42"
    assert payloads.parse(json.dumps(body).encode()).agent == "42"


# -- errors name the sender's path --------------------------------------------------------------


def test_a_missing_ticket_id_names_the_expected_path() -> None:
    data = helpdesks.vector("zammad-default-payload.json")
    del data["ticket"]["number"]

    error = refused("zammad", data)

    assert error.fields == ["/ticket/number"]
    assert "/ticket/number is required (the ticket id)" in error.message


def test_a_missing_event_and_ticket_are_named_together() -> None:
    error = refused("jira-service-management", {"fields": {}})

    assert error.fields == ["/fields/status/statusCategory/key", "/key"]


def test_an_event_value_that_means_nothing_names_the_path_and_the_expected_values() -> None:
    opened = helpdesks.render(helpdesks.template("zendesk", "open"), helpdesks.ZENDESK_VALUES)

    error = refused("zendesk", {**opened, "event": "solve"})

    assert error.fields == ["/event"]
    assert "'open', 'close', 'reassign'" in error.message


@pytest.mark.parametrize(
    ("value", "kind"), [({"a": 1}, "an object"), ([1], "a list"), (True, "bool"), (1.5, "float")]
)
def test_a_value_of_the_wrong_type_is_400_naming_the_path(value: Any, kind: str) -> None:
    data = helpdesks.vector("zammad-default-payload.json")
    data["ticket"]["number"] = value

    error = refused("zammad", data)

    assert error.fields == ["/ticket/number"]
    assert kind in error.message


def test_mapped_values_get_the_same_text_checks_and_limits_as_sealroom_s_own_body() -> None:
    data = helpdesks.vector("zammad-default-payload.json")
    data["ticket"]["number"] = "10081\u202e"  # a bidi override in an identifier
    error = refused("zammad", data)
    assert error.fields == ["/ticket/number"]
    assert "U+202E" in error.message

    data = helpdesks.vector("zammad-default-payload.json")
    data["ticket"]["number"] = "9" * (TICKET_REF_MAX + 1)
    data["ticket"]["title"] = "x" * (SUBJECT_MAX + 1)
    error = refused("zammad", data)
    assert error.fields == ["/ticket/number", "/ticket/title"]

    data = helpdesks.vector("jsm-issue-automation-format.json")
    data["fields"]["assignee"]["emailAddress"] = "mia\x00@example.com"
    assert refused("jira-service-management", data).fields == ["/fields/assignee/emailAddress"]


def test_fields_override_single_entries_of_a_preset() -> None:
    data = helpdesks.vector("zammad-default-payload.json")

    parsed = read("zammad", data, ticket_id="/ticket/id", close=["open"])

    assert parsed.body.ticket.id == "81"
    assert parsed.body.event == "close"
    assert parsed.body.ticket.subject == "Webhook-Test"  # the rest is the preset's


def test_every_preset_is_complete() -> None:
    for name, field_map in PRESETS.items():
        assert isinstance(field_map, FieldMap)
        assert field_map.problems() == [], name
