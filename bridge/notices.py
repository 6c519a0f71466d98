"""The texts the bot posts into a secure room. No secret is ever part of a notice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _about(ticket_ref: str, subject: str) -> str:
    return f"ticket {ticket_ref} ({subject})" if subject else f"ticket {ticket_ref}"


def rules(ticket_ref: str, expires_at: datetime, subject: str = "") -> str:
    return (
        f"Welcome. This end-to-end encrypted room exists only to share credentials for "
        f"{_about(ticket_ref, subject)}. Post the credentials here and nothing else. The room "
        "and everything in it will be wiped when the ticket is done, at the latest on "
        f"{_when(expires_at)}. "
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
        "admin": "an administrator closed it",
    }.get(reason, "it is no longer needed")
    return (
        f"This secure room is being closed because {why}. Everyone will be removed and "
        "the room will be wiped. Please change any credentials you shared here if you "
        "no longer want the support team to use them."
    )


def agent_help() -> str:
    return (
        "Commands: !close (close and wipe this room now); !extend [duration] (keep it open "
        "longer, for example !extend 2h or !extend 3d; 24h without a duration); !status (who "
        "is here and until when); !link (a new invite link for the customer; the old one stops "
        "working); !trust @user (accept a member's new identity after checking with them); "
        "!help (this list)."
    )


def command_usage(problem: str) -> str:
    return f"{problem} Send !help for every command."


def command_untrusted_device() -> str:
    return (
        "This command came from a device of yours that is not verified (cross-signed), so it "
        "was not carried out. Verify this session in your Matrix client, then send it again."
    )


def invite_failed(user_id: str, link_usable: bool, unreachable_server: str | None = None) -> str:
    why = (
        f"their homeserver {unreachable_server} did not answer"
        if unreachable_server
        else "their homeserver refused it"
    )
    then = (
        "Their invite link works again: ask them to check the Matrix ID and try once more."
        if link_usable
        else "Send them a new link (a new open webhook for this ticket)."
    )
    return f"The invitation of {user_id} failed: {why}. {then}"


def device_excluded(user_id: str, device_id: str, reason: str) -> str:
    if reason == "no_cross_signing":
        why = "its owner has not set up cross-signing (verification)"
    else:
        why = "its owner has not verified (cross-signed) it"
    return (
        f"Warning: the device {device_id} of {user_id} gets no keys for this room because {why}. "
        f"{user_id}: verify this session in your Matrix client (for example with your recovery "
        "key) to read and send messages here."
    )


def identity_changed(user_id: str) -> str:
    return (
        f"Warning: the cryptographic identity of {user_id} changed since they were first seen. "
        "Their devices get no keys for this room. If they did not reset their encryption "
        "themselves, someone else may be using their account. The agent can accept the new "
        f"identity with: !trust {user_id}"
    )


def identity_accepted(user_id: str) -> str:
    return f"The new identity of {user_id} was accepted by the agent."


def registration_incomplete(user_id: str) -> str:
    return (
        f"A customer created the account {user_id} from the invite page, but left before its "
        "encryption was set up, so it was not invited. Agent: send them a new link (a new open "
        "webhook for this ticket) and ask them to finish on the page, or to log in with that "
        "account in Element and set up encryption there."
    )


def agent_welcome(ticket_ref: str, subject: str, expires_at: datetime) -> str:
    return (
        f"This secure room is for {_about(ticket_ref, subject)}. The customer has been sent an "
        "invite link; they will appear here when they join (you will be told if their "
        "invitation fails). Ask them to post the credentials here, and nothing else. "
        f"The room is wiped when the ticket is closed, at the latest on {_when(expires_at)}. "
        "Send !help for the commands (!status, !extend, !link, !close)."
    )


def status(state: str, members: Sequence[str], expires_at: datetime) -> str:
    who = ", ".join(members) if members else "nobody yet"
    return f"Status: {state}. In the room: {who}. Wiped at the latest on {_when(expires_at)}."


def invite_link(url: str) -> str:
    return (
        f"A new invite link for the customer (the previous one no longer works): {url} "
        "It can be used once. Send it to the customer only."
    )


def command_not_yours(command: str) -> str:
    return (
        f"Only the agent of this ticket can use {command}; I will not carry it out. "
        "Ask the agent if something needs to change."
    )


def expiry_warning(expires_at: datetime) -> str:
    return (
        f"This secure room will be closed and wiped on {_when(expires_at)}. Agent: send "
        "!extend 2h (or another duration) if you need it longer."
    )


def customer_left(user_id: str) -> str:
    return (
        f"{user_id} left the secure room. Agent: send !link for a new invite link if they "
        "need to come back, or !close when you are done."
    )
