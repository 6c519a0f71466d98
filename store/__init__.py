"""Persistence for sealroom: the only package that imports SQLAlchemy."""

from store.engine import Database
from store.models import AuditEvent, Invite, Job, SecureSession, WebhookDelivery

__all__ = ["AuditEvent", "Database", "Invite", "Job", "SecureSession", "WebhookDelivery"]
