"""New customers: an account and its encryption made in the browser, checked by matrix-js-sdk."""

from __future__ import annotations

import secrets
import time

from tests.e2e.conftest import SealroomFactory
from tests.support import jsclient
from tests.support.matrix_users import from_bot
from tests.support.registration import register_with_token

js_client = jsclient.js_client  # the fixture

SECRET_NAMES = {
    "m.cross_signing.master",
    "m.cross_signing.self_signing",
    "m.cross_signing.user_signing",
    "m.megolm_backup.v1",
}


async def _open_registration(sealroom: SealroomFactory, page, ticket: str = "T-NEW"):
    service = await sealroom(admin_token=True, registration={"enabled": True})
    opened = await service.open_ticket(ticket)
    await page.goto(opened["invite_url"])
    await page.wait_for_selector("#register:not([hidden])")
    return service, opened


async def test_new_customer_registers_and_gets_a_working_recovery_key(
    sealroom: SealroomFactory, page, js_client
) -> None:
    service, opened = await _open_registration(sealroom, page)
    bot_id = service.config.bot.user_id
    seen: list[tuple[str, str, str]] = []  # every request the page sent to sealroom
    page.on(
        "request",
        lambda request: (
            seen.append((request.url, str(request.headers), request.post_data or ""))
            if request.url.startswith(service.url)
            else None
        ),
    )
    localpart = f"casey-{secrets.token_hex(3)}"
    password = f"Canary-Pass-{secrets.token_hex(8)}!"
    await page.fill("#username", localpart)
    await page.locator("#username-status", has_text="is available").wait_for()
    await page.fill("#password", password)
    await page.fill("#password-again", password)
    started = time.monotonic()
    await page.click("#create-account")
    await page.wait_for_selector("#recovery:not([hidden])", timeout=60_000)
    elapsed = time.monotonic() - started
    print(f"\nregistration + encryption set-up in the browser: {elapsed:.2f} s")
    recovery_key = (await page.text_content("#recovery-key")).strip()
    assert len(recovery_key.split()) == 12
    await page.click("#recovery-continue")
    # The key is asked back (its first two groups) before the page goes on.
    await page.fill("#recovery-check", "".join(recovery_key.split()[:2]).lower())
    await page.click("#recovery-confirm")
    await page.wait_for_selector("#recovery-check-error:not([hidden])")
    assert not await page.is_visible("#done")
    await page.fill("#recovery-check", " ".join(recovery_key.split()[:2]))
    await page.click("#recovery-confirm")
    await page.wait_for_selector("#done:not([hidden])")
    user_id = f"@{localpart}:localhost"
    assert await page.text_content("#login-username") == user_id
    assert await page.text_content("#recovery-key") == ""  # gone from the page

    # An independent implementation logs in on a new device and unlocks everything with the key.
    customer = await js_client(user_id=user_id, password=password)
    opened_storage = await customer.open_secret_storage(recovery_key)
    assert opened_storage["key_ok"] is True
    assert {name for name, ok in opened_storage["secrets"].items() if ok} >= SECRET_NAMES
    assert opened_storage["own_device_cross_signed"] is True
    backup = await customer.backup_info()
    assert backup["trusted"] is True
    assert backup["matches_decryption_key"] is True

    # The new account was invited; it joins and reads the bot's notice.
    room_id = await customer.wait_invite()
    await customer.join(room_id)
    await customer.wait_message(room_id, sender=bot_id, contains="only to share credentials")
    assert (await customer.messages(room_id))["undecryptable"] == []

    # A wrong key opens nothing on yet another device.
    other = await js_client(user_id=user_id, password=password)
    wrong = await other.open_secret_storage(
        "EsTJ vezE 52JN 5Ncb KKwV yLRS DC7W skdC apKz YDE4 q5Ce SyVu"
    )
    assert wrong["key_ok"] is False
    assert not any(wrong["secrets"].values())
    assert (await other.backup_info())["matches_decryption_key"] is False

    # The server never saw the password or the recovery key: requests, logs, database, data dir.
    compact = recovery_key.replace(" ", "")
    assert seen, "the page sent nothing to sealroom?"
    for url, headers, body in seen:
        for needle in (password, recovery_key, compact):
            assert needle not in url + headers + body
    await service.app.stop()
    for path, data in service.secret_haystack():
        for needle in (password, recovery_key, compact):
            assert needle.encode() not in data, f"{needle[:6]}… found in {path}"


async def test_leaving_halfway_revokes_the_token_or_tells_the_agent(
    sealroom: SealroomFactory, matrix_user, synapse
) -> None:
    from bridge.matrix.admin import SynapseAdmin

    agent = await matrix_user("agent")
    service = await sealroom(
        admin_token=True,
        registration={"enabled": True},
        agents={"agent@example.com": agent.user_id},
    )
    admin = SynapseAdmin(synapse.url, await synapse.admin_token())
    opened = await service.open_ticket("T-LEFT")
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    token = service.tokens[-1]

    # Left before registering: the minted token is revoked on the homeserver.
    status, started = await service.post_json("/i/register/start", {"token": token})
    assert status == 200
    first = started["registration_token"]
    status, _ = await service.post_json(
        "/i/register/abandon", {"token": token, "registration_token": "x" * 43}
    )
    assert status == 403
    status, _ = await service.post_json(
        "/i/register/abandon", {"token": token, "registration_token": first}
    )
    assert status == 200
    assert await admin.get_registration_token(first) is None

    # Left after the account was made but before encryption: the agent is told in the room.
    status, started = await service.post_json("/i/register/start", {"token": token})
    second = started["registration_token"]
    localpart = f"halfway-{secrets.token_hex(3)}"
    status, _ = await register_with_token(synapse, localpart, "Pw-" + secrets.token_hex(8), second)
    assert status == 200
    status, _ = await service.post_json(
        "/i/register/abandon",
        {"token": token, "registration_token": second, "user_id": f"@{localpart}:localhost"},
    )
    assert status == 200
    bot_id = service.config.bot.user_id
    await agent.wait_for_message(room_id, from_bot(bot_id, f"@{localpart}:localhost", "left"))
    row = await service.session_row(opened["session_id"])
    assert row.customer_user_id is None  # nothing was spent: the link still works
