"""An integration as the web layer uses it: how to verify a delivery and how to read its body."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.helpdesk.mapping import FieldMap
from bridge.helpdesk.verifier import Verifier


@dataclass(frozen=True)
class Integration:
    verifier: Verifier
    # None: sealroom's own body, read by bridge.helpdesk.payloads.parse as before mappings.
    field_map: FieldMap | None = None
