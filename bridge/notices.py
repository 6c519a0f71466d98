"""The texts the bot posts into a secure room, in the room's language (`lang`, one of
bridge.i18n.LANGUAGES: set per integration). No secret is ever part of a notice.

Every sentence goes through the catalogues (bridge/locale); times are written the way a reader
of the language writes them, in UTC, with the zone named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bridge import i18n

Translate = Callable[[str], str]


def _translator(lang: str) -> Translate:
    return i18n.translations(lang).gettext


def _when(moment: datetime, lang: str) -> str:
    return i18n.format_moment(moment, lang)


def _about(ticket_ref: str, subject: str, _: Translate) -> str:
    if subject:
        return _("ticket %(ticket)s (%(subject)s)") % {"ticket": ticket_ref, "subject": subject}
    return _("ticket %(ticket)s") % {"ticket": ticket_ref}


def rules(ticket_ref: str, expires_at: datetime, subject: str = "", *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "Welcome. This end-to-end encrypted room exists only to share credentials for "
        "%(about)s. Post the credentials here and nothing else. The room and everything in it "
        "will be wiped when the ticket is done, at the latest on %(when)s. If your app asks you "
        "to verify your session, do so (for example with your recovery key) so that your "
        "messages can be read."
    ) % {"about": _about(ticket_ref, subject, _), "when": _when(expires_at, lang)}


def joined(user_id: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _("%(user)s joined the secure room.") % {"user": user_id}


def extended(expires_at: datetime, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _("This secure room now stays open until %(when)s.") % {"when": _when(expires_at, lang)}


def closing(reason: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    why = {
        "helpdesk": _("the ticket was closed in the helpdesk"),
        "agent": _("the agent closed it"),
        "expired": _("its time ran out"),
        "admin": _("an administrator closed it"),
        "idle": _("nothing was said in it for a long time"),
    }.get(reason, _("it is no longer needed"))
    return _(
        "This secure room is being closed because %(why)s. Everyone will be removed and the "
        "room will be wiped. Please change any credentials you shared here if you no longer "
        "want the support team to use them."
    ) % {"why": why}


def agent_help(*, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "Commands: !close (close and wipe this room now); !extend [duration] (keep it open "
        "longer, for example !extend 2h or !extend 3d; 24h without a duration); !status (who "
        "is here and until when); !link (a new invite link for the customer; the old one stops "
        "working); !trust @user (accept a member's new identity after checking with them); "
        "!help (this list)."
    )


def command_usage(problem: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _("%(problem)s Send !help for every command.") % {"problem": problem}


def command_untrusted_device(*, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "This command came from a device of yours that is not verified, so it was not carried "
        "out. Verify this session in your Matrix app, then send it again."
    )


def invite_failed(
    user_id: str, link_usable: bool, unreachable_server: str | None = None, *, lang: str = "en"
) -> str:
    """`unreachable_server`: the customer's homeserver, when it did not answer (not ours)."""
    _ = _translator(lang)
    then = (
        _("Their invite link works again: ask them to check the Matrix address and try once more.")
        if link_usable
        else _("Send them a new link (a new open webhook for this ticket).")
    )
    if unreachable_server:
        return _(
            "The invitation of %(user)s failed: their Matrix server %(server)s did not answer. "
            "%(then)s"
        ) % {"user": user_id, "server": unreachable_server, "then": then}
    return _("The invitation of %(user)s failed: their Matrix server refused it. %(then)s") % {
        "user": user_id,
        "then": then,
    }


def device_excluded(user_id: str, device_id: str, reason: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    if reason == "no_cross_signing":
        why = _("its owner has not set up verification for their devices")
    else:
        why = _("its owner has not verified it")
    return _(
        "Warning: the device %(device)s of %(user)s gets no keys for this room because "
        "%(why)s. %(user)s: verify this session in your Matrix app (for example with your "
        "recovery key) to read and send messages here."
    ) % {"device": device_id, "user": user_id, "why": why}


def identity_changed(user_id: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "Warning: the cryptographic identity of %(user)s changed since they were first seen. "
        "Their devices get no keys for this room. If they did not reset their encryption "
        "themselves, someone else may be using their account. The agent can accept the new "
        "identity with: !trust %(user)s"
    ) % {"user": user_id}


def identity_accepted(user_id: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _("The new identity of %(user)s was accepted by the agent.") % {"user": user_id}


def registration_incomplete(user_id: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "A customer created the account %(user)s from the invite page, but left before its "
        "encryption was set up, so it was not invited. Agent: send them a new link (a new open "
        "webhook for this ticket) and ask them to finish on the page, or to sign in with that "
        "account in Element and set up encryption there."
    ) % {"user": user_id}


def agent_welcome(ticket_ref: str, subject: str, expires_at: datetime, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "This secure room is for %(about)s. The customer has been sent an invite link; they "
        "will appear here when they join (you will be told if their invitation fails). Ask "
        "them to post the credentials here, and nothing else. The room is wiped when the ticket "
        "is closed, at the latest on %(when)s. Send !help for the commands (!status, !extend, "
        "!link, !close)."
    ) % {"about": _about(ticket_ref, subject, _), "when": _when(expires_at, lang)}


def status(state: str, members: Sequence[str], expires_at: datetime, *, lang: str = "en") -> str:
    _ = _translator(lang)
    who = ", ".join(members) if members else _("nobody yet")
    return _("Status: %(state)s. In the room: %(who)s. Wiped at the latest on %(when)s.") % {
        "state": state,
        "who": who,
        "when": _when(expires_at, lang),
    }


def invite_link(url: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "A new invite link for the customer (the previous one no longer works): %(url)s It can "
        "be used once. Send it to the customer only."
    ) % {"url": url}


def command_not_yours(command: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "Only the agent of this ticket can use %(command)s; I will not carry it out. Ask the "
        "agent if something needs to change."
    ) % {"command": command}


def expiry_warning(expires_at: datetime, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "This secure room will be closed and wiped on %(when)s. Agent: send !extend 2h (or "
        "another duration) if you need it longer."
    ) % {"when": _when(expires_at, lang)}


def bot_leaving(*, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "Zero-knowledge mode: sealroom leaves this room as soon as the agent and the customer "
        "are both here, before anything is shared, so it can never read what you send. Wait "
        "until it has left before you share a credential. The room is still wiped when the "
        "ticket is closed or the session expires (commands such as !status stop working once it "
        "has left)."
    )


def idle_warning(deadline: datetime, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "Nothing has been said here for a while: this secure room will be closed and wiped "
        "on %(when)s unless someone writes in it."
    ) % {"when": _when(deadline, lang)}


def customer_left(user_id: str, *, lang: str = "en") -> str:
    _ = _translator(lang)
    return _(
        "%(user)s left the secure room. Agent: send !link for a new invite link if they need "
        "to come back, or !close when you are done."
    ) % {"user": user_id}
