"""Field mappings for the common helpdesks, so that the usual set-up needs no `fields:` at all.

Each preset says where its payload's source is documented. Where the helpdesk sends a body the
admin writes (Zendesk triggers, Freshdesk automations), the body is the template published in
`docs/helpdesks/<name>.md`, made of the helpdesk's own placeholders; where it sends a fixed body
(Zammad's default payload, Jira's "Issue data (Automation format)"), the paths are the vendor's.
"""

from __future__ import annotations

from bridge.helpdesk.mapping import ANY, FieldMap

PRESETS: dict[str, FieldMap] = {
    # sealroom's own body (README "The webhook"): {"event", "ticket": {"id", "subject"},
    # "agent", "customer": {"name", "email"}}. The base of `fields:` without a preset.
    "sealroom": FieldMap(
        event=("/event",),
        ticket_id=("/ticket/id",),
        subject=("/ticket/subject",),
        agent=("/agent/email", "/agent/id", "/agent"),
        customer_name=("/customer/name",),
        customer_email=("/customer/email",),
    ),
    # Zendesk: a trigger's "Notify by > Active webhook" action sends the JSON body the admin
    # pastes; docs/helpdesks/zendesk.md has it, built from Zendesk's placeholders
    # ({{ticket.id}}, {{ticket.title}}, {{ticket.assignee.email}}, {{ticket.requester.name}},
    # {{ticket.requester.email}}; Zendesk help center, "Zendesk Support placeholders
    # reference"). One trigger per event, each with its literal "event".
    "zendesk": FieldMap(
        event=("/event",),
        ticket_id=("/ticket/id",),
        subject=("/ticket/title",),
        agent=("/ticket/assignee/email", "/ticket/assignee/id"),
        customer_name=("/ticket/requester/name",),
        customer_email=("/ticket/requester/email",),
        open=("open",),
        close=("close",),
        reassign=("reassign",),
    ),
    # Zammad: the default webhook payload (docs.zammad.org, "Webhook > Payload",
    # zammad-admin-documentation manage/webhook/payload.rst): ticket.number (what agents see),
    # ticket.title, ticket.owner, ticket.customer, ticket.state. The trigger decides when it is
    # sent; the ticket's state says what it means: Zammad's closing states close, any other
    # state opens (or hands over to the current owner).
    "zammad": FieldMap(
        event=("/ticket/state",),
        ticket_id=("/ticket/number",),
        subject=("/ticket/title",),
        agent=("/ticket/owner/email", "/ticket/owner/login"),
        customer_name=("/ticket/customer/firstname", "/ticket/customer/lastname"),
        customer_email=("/ticket/customer/email",),
        open=(ANY,),
        close=("closed", "merged", "removed"),
        reassign=(),
    ),
    # Freshdesk: an automation rule's "Trigger webhook" action with JSON encoding, "Advanced"
    # content: the body the admin pastes (docs/helpdesks/freshdesk.md), in the
    # {"freshdesk_webhook": {...}} layout integrations commonly use, filled with Freshdesk's
    # placeholders ({{ticket.id}}, {{ticket.subject}}, {{ticket.status}},
    # {{ticket.agent.email}}, {{ticket.requester.name}}, {{ticket.requester.email}}).
    # Resolved and Closed close; any other status opens.
    "freshdesk": FieldMap(
        event=("/freshdesk_webhook/ticket_status",),
        ticket_id=("/freshdesk_webhook/ticket_id",),
        subject=("/freshdesk_webhook/ticket_subject",),
        agent=("/freshdesk_webhook/ticket_agent_email",),
        customer_name=("/freshdesk_webhook/requester_name",),
        customer_email=("/freshdesk_webhook/requester_email",),
        open=(ANY,),
        close=("Resolved", "Closed"),
        reassign=(),
    ),
    # Jira Service Management: an automation rule's "Send web request" action with the web
    # request body "Issue data (Automation format)" (Atlassian support, "Issue data (Automation
    # format) payload for Send Web Request"): the issue at the top level, key and fields as in
    # Jira's REST API. A status in the "done" category closes; any other opens. Jira Cloud
    # hides most e-mail addresses, so the agent falls back to the assignee's accountId (map it
    # under the integration's agents:).
    "jira-service-management": FieldMap(
        event=("/fields/status/statusCategory/key",),
        ticket_id=("/key",),
        subject=("/fields/summary",),
        agent=("/fields/assignee/emailAddress", "/fields/assignee/accountId"),
        customer_name=("/fields/reporter/displayName",),
        customer_email=("/fields/reporter/emailAddress",),
        open=(ANY,),
        close=("done",),
        reassign=(),
    ),
}
