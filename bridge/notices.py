"""The texts the bot posts into a secure room. No secret is ever part of a notice."""

from __future__ import annotations

from datetime import datetime


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def rules(ticket_ref: str, expires_at: datetime) -> str:
    return (
        f"Welcome. This end-to-end encrypted room exists only to share credentials for ticket "
        f"{ticket_ref}. Post the credentials here and nothing else. The room and everything in "
        f"it will be wiped when the ticket is done, at the latest on {_when(expires_at)}. "
        "If your client asks you to verify your session, do so (for example with your "
        "recovery key) so that your messages can be read."
    )


def joined(user_id: str) -> str:
    return f"{user_id} joined the secure room."


def extended(expires_at: datetime) -> str:
    return f"This secure room now stays open until {_when(expires_at)}."


def closing(reason: str) -> str:
    why = {
        "helpdesk": "the ticket was closed in the helpdesk",
        "agent": "the agent closed it",
        "expired": "its time ran out",
    }.get(reason, "it is no longer needed")
    return (
        f"This secure room is being closed because {why}. Everyone will be removed and "
        "the room will be wiped. Please change any credentials you shared here if you "
        "no longer want the support team to use them."
    )


def agent_help() -> str:
    return (
        "Commands: !close (close and wipe this room now), !extend [hours] (keep it open longer)."
    )
