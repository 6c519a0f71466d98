"""POST /hooks/{integration}: verify, parse, hand to the domain, answer after it is durable."""

from __future__ import annotations

import structlog
from aiohttp import web

from bridge import metrics
from bridge.deliveries import Delivery, OutcomeKind, invite_url
from bridge.errors import AgentUnknown, IntegrationUnknown, SealroomError
from bridge.helpdesk import payloads
from bridge.sessions import OpenRequest
from bridge.web.body import read_body
from bridge.web.keys import INTEGRATIONS, SERVICES, SETTINGS

log = structlog.stdlib.get_logger(__name__)
routes = web.RouteTableDef()

STATUS = {OutcomeKind.CREATED: 201, OutcomeKind.REUSED: 200, OutcomeKind.CLOSING: 202}


@routes.post("/hooks/{integration}")
async def receive_webhook(request: web.Request) -> web.Response:
    integration = request.match_info["integration"]
    structlog.contextvars.bind_contextvars(integration=integration)
    configured = request.app[INTEGRATIONS].get(integration)
    if configured is None:
        metrics.WEBHOOKS.labels("unknown", "unknown_integration").inc()
        raise IntegrationUnknown(f"No integration named {integration!r} is configured.")
    try:
        body = await read_body(request)
        webhook_id = configured.verifier.verify(request.headers, body)
        structlog.contextvars.bind_contextvars(webhook_id=webhook_id)
        parsed = payloads.read(body, configured.field_map)
        payload = parsed.body
        structlog.contextvars.bind_contextvars(ticket_ref=payload.ticket.id)
        delivery = Delivery(integration, webhook_id)
        deliveries = request.app[SERVICES].deliveries
        if payload.event in ("open", "reassign"):
            try:
                outcome = await deliveries.open(
                    delivery,
                    OpenRequest(
                        payload.ticket.id,
                        payload.ticket.subject,
                        payload.agent,
                        reassign=payload.event == "reassign",
                    ),
                )
            except AgentUnknown as err:
                err.fields = [parsed.path_of("agent")]  # where the sender put the agent
                raise
        else:
            outcome = await deliveries.close_ticket(delivery, payload.ticket.id)
    except SealroomError as err:
        metrics.WEBHOOKS.labels(integration, err.errcode.lower()).inc()
        raise
    status = STATUS[outcome.kind]
    body_out = dict(outcome.body)
    if outcome.invite_token is not None:
        base = request.app[SETTINGS].public_base_url
        body_out["invite_url"] = invite_url(base, outcome.invite_token)
    if outcome.replayed:
        body_out["replayed"] = True
    metrics.WEBHOOKS.labels(integration, "replayed" if outcome.replayed else "accepted").inc()
    log.info(
        "webhook.accepted",
        webhook_event=payload.event,
        status=status,
        replayed=outcome.replayed,
    )
    return web.json_response(body_out, status=status)
