"""The size of every text column that holds outside input, and the matching validation limits.

One place, read by both sides: `store.models` sizes its columns with these, and the webhook
payload model (`bridge.helpdesk.payloads`) and the web layer refuse longer values with a 400
naming the field. Without that, PostgreSQL refuses a value SQLite silently keeps, and a helpdesk
gets a 500. Lengths are in characters (code points), as PostgreSQL's VARCHAR(n) counts them.
Changing a column size needs a migration; keep the numbers and the migrations in step.
"""

from __future__ import annotations

# A helpdesk's ticket id ("4711", "INC-2024-000123").
TICKET_REF_MAX = 255
# The agent as the helpdesk names them (an id or an e-mail address; RFC 5321 caps a path at 254).
AGENT_REF_MAX = 255
# A Matrix user ID, room ID or room alias: the spec caps each at 255 bytes.
MATRIX_ID_MAX = 255
# The Standard Webhooks `webhook-id` header, kept to recognise replays.
WEBHOOK_ID_MAX = 255
# An integration's name from the configuration (it becomes /hooks/<name>).
INTEGRATION_MAX = 64
# A ticket's subject: a TEXT column, bounded here so that one webhook cannot store megabytes.
SUBJECT_MAX = 500
# The audit trail's actor: an agent as the helpdesk names them, or a Matrix user.
ACTOR_MAX = max(AGENT_REF_MAX, MATRIX_ID_MAX)
