"""New customers: every way "Create an account" can fail, in a real browser against real Synapse.

Each test checks what the customer sees and what the servers hold afterwards: the invite is spent
only by a verified registration, a refused or broken attempt never creates a stray account, and
the recovery key is shown once and kept nowhere. Screenshots of the registration states go to
docs/images/register-<state>.png when SEALROOM_SCREENSHOTS is set.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from bridge.devtools.localsynapse import LocalSynapse
from bridge.matrix.admin import SynapseAdmin
from bridge.registration import MAX_REGISTRATION_ATTEMPTS
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support import jsclient
from tests.support.browser import new_page, prepare_page, screenshot
from tests.support.registration import REGISTER_PATH, register_with_token
from tests.support.rows import expire_invite, invite_row

js_client = jsclient.js_client  # the fixture

pytestmark = pytest.mark.timeout(180)

VIEWPORT = {"width": 800, "height": 900}
REGISTER_TIMEOUT_MS = 30_000  # registration + encryption set-up in the browser
GONE_HEADING = "This link can no longer be used"
TAKEN = "This user name is taken. Choose another one."
STRONG = "Canary-Pass-{}!"


# -- helpers -------------------------------------------------------------------------------------


async def _service(sealroom: SealroomFactory) -> Sealroom:
    return await sealroom(admin_token=True, registration={"enabled": True})


async def _ticket(service: Sealroom, ticket: str) -> tuple[str, str]:
    """Open a ticket; return its invite URL and invite token."""
    opened = await service.open_ticket(ticket)
    return opened["invite_url"], service.tokens[-1]


async def _open_form(page: Any, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector("#register:not([hidden])")
    assert await page.is_visible("#register-form")


def _record_requests(page: Any) -> list[tuple[str, str]]:
    """Every request the page sends, as (method, url)."""
    seen: list[tuple[str, str]] = []
    page.on("request", lambda request: seen.append((request.method, request.url)))
    return seen


def _hs_registers(seen: list[tuple[str, str]], synapse: LocalSynapse) -> list[str]:
    """The account-creating calls to the homeserver (not the availability check)."""
    return [
        url
        for method, url in seen
        if method == "POST" and url.startswith(synapse.url) and urlsplit(url).path == REGISTER_PATH
    ]


def _starts(seen: list[tuple[str, str]], service: Sealroom) -> list[str]:
    return [url for method, url in seen if method == "POST" and url.endswith("/i/register/start")]


async def _admin(synapse: LocalSynapse) -> SynapseAdmin:
    return SynapseAdmin(synapse.url, await synapse.admin_token())


async def _wait_status(page: Any, text: str) -> None:
    await page.locator("#username-status", has_text=text).wait_for()


async def _wait_error(page: Any, text: str) -> str:
    error = page.locator("#register-error", has_text=text)
    await error.wait_for(state="visible")
    return (await error.text_content() or "").strip()


async def _assert_gone(page: Any) -> None:
    """The neutral section, and nothing to register with."""
    await page.wait_for_selector("#gone:not([hidden])")
    assert (await page.text_content("#gone h2") or "").strip() == GONE_HEADING
    assert "Ask your support agent for a new link" in (await page.text_content("#gone-message"))
    for hidden in ("#register", "#register-form", "#username", "#invite", "#recovery", "#done"):
        assert not await page.is_visible(hidden), f"{hidden} is visible on the gone page"


async def _fill_account(page: Any, localpart: str, password: str, again: str | None = None):
    await page.fill("#username", localpart)
    await page.fill("#password", password)
    await page.fill("#password-again", password if again is None else again)


def _localpart(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def _password() -> str:
    return STRONG.format(secrets.token_hex(8))


async def _storage(page: Any, origin: str) -> dict[str, list[list[str]]]:
    """localStorage and sessionStorage of the page's `origin`, over CDP (the CSP blocks eval).

    The homeserver's origin has no document in the page, so there is nothing of it to read.
    """
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("DOMStorage.enable")
        found = {}
        for kind, is_local in (("local", True), ("session", False)):
            answer = await cdp.send(
                "DOMStorage.getDOMStorageItems",
                {"storageId": {"securityOrigin": origin, "isLocalStorage": is_local}},
            )
            found[kind] = answer["entries"]
        return found
    finally:
        await cdp.detach()


async def _assert_key_kept_nowhere(page: Any, service: Sealroom, key: str) -> None:
    needles = {key, key.replace(" ", ""), *key.split(" ")[:3]}
    haystack = [page.url, await page.content()]
    haystack.append(json.dumps(await _storage(page, service.url)))
    haystack.append(json.dumps(await page.context.cookies()))
    haystack.append(json.dumps(await page.context.storage_state()))
    for hay in haystack:
        for needle in needles:
            assert needle not in hay, f"the recovery key ({needle[:4]}…) is kept: {hay[:200]}"


async def _create_and_wait_recovery(page: Any) -> str:
    await page.click("#create-account")
    await page.wait_for_selector("#recovery:not([hidden])", timeout=REGISTER_TIMEOUT_MS)
    key = (await page.text_content("#recovery-key") or "").strip()
    assert len(key.split()) == 12
    return key


# -- (1) a taken user name -----------------------------------------------------------------------


async def test_taken_user_name_spends_nothing_and_another_name_succeeds(
    sealroom: SealroomFactory, synapse: LocalSynapse, page
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-TAKEN")
    taken = _localpart("taken")
    await synapse.register_user(taken, secrets.token_urlsafe(16))
    page = await prepare_page(page, VIEWPORT)
    seen = _record_requests(page)
    starts: list[Any] = []
    page.on(
        "response",
        lambda response: (
            starts.append(response) if response.url.endswith("/i/register/start") else None
        ),
    )
    await _open_form(page, url)

    # The live check already says so...
    password = _password()
    await _fill_account(page, taken, password)
    await _wait_status(page, "taken")
    assert (await page.text_content("#username-status")).strip() == TAKEN

    # ...and submitting anyway gets "taken" from the homeserver itself.
    await page.click("#create-account")
    message = await _wait_error(page, "taken")
    assert message == TAKEN
    assert len(_hs_registers(seen, synapse)) >= 1, "the homeserver was never asked"
    assert not await page.is_visible("#recovery")
    assert not await page.is_visible("#retry-encryption")
    assert await page.is_enabled("#create-account")

    # Nothing spent: the invite is unused and the registration token unused on the homeserver.
    invite = await invite_row(service.app.database, token)
    assert invite.used_at is None
    assert invite.used_by is None
    assert invite.registration_attempts == 1
    assert len(starts) == 1
    registration_token = (await starts[0].json())["registration_token"]
    minted = await (await _admin(synapse)).get_registration_token(registration_token)
    assert minted is not None
    assert (minted.pending, minted.completed) == (0, 0)

    # Another name: available, and the account is made (with the same registration token).
    fresh = _localpart("casey")
    await page.fill("#username", fresh)
    await _wait_status(page, "is available")
    await page.fill("#password", password)
    await page.fill("#password-again", password)
    await _create_and_wait_recovery(page)
    assert len(_starts(seen, service)) == 1, "a second registration token was minted"
    user_id = f"@{fresh}:localhost"
    invite = await invite_row(service.app.database, token)
    assert invite.used_by == user_id
    assert invite.used_at is not None
    admin = await _admin(synapse)
    assert await admin.user_created_at(user_id) is not None
    assert await admin.get_registration_token(registration_token) is None  # tidied away


# -- (2) an invalid user name --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Casey", "Use lowercase letters only."),
        ("casey smith", "Use only lowercase letters, digits and . _ = - / +"),
    ],
    ids=["uppercase", "space"],
)
async def test_invalid_user_name_is_refused_in_the_browser(
    sealroom: SealroomFactory, synapse: LocalSynapse, page, name: str, expected: str
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-NAME")
    page = await prepare_page(page, VIEWPORT)
    seen = _record_requests(page)
    await _open_form(page, url)

    await _fill_account(page, name, _password())
    await _wait_status(page, expected)  # the live check, without asking the homeserver
    await page.click("#create-account")
    assert await _wait_error(page, expected) == expected

    assert _hs_registers(seen, synapse) == []
    assert not [u for _, u in seen if "/register/available" in u], "an invalid name was checked"
    assert _starts(seen, service) == []
    invite = await invite_row(service.app.database, token)
    assert invite.used_at is None
    assert invite.registration_attempts == 0
    assert await (await _admin(synapse)).user_created_at(f"@{name.lower()}:localhost") is None


# -- (3) a weak password -------------------------------------------------------------------------


async def test_weak_passwords_are_refused_in_the_browser_and_a_strong_one_is_suggested(
    sealroom: SealroomFactory, synapse: LocalSynapse, page
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-WEAK")
    page = await prepare_page(page, VIEWPORT)
    seen = _record_requests(page)
    await _open_form(page, url)
    localpart = _localpart("weak")
    await page.fill("#username", localpart)
    await _wait_status(page, "is available")

    cases = [
        ("Short-1!", None, "Use at least 12 characters for the password."),
        ("abcdefghijklmnop", None, "Mix lowercase and uppercase letters, digits and symbols"),
        (_password(), _password(), "The two passwords are not the same."),
    ]
    for password, again, expected in cases:
        await page.fill("#password", password)
        await page.fill("#password-again", password if again is None else again)
        await page.click("#create-account")
        shown = await _wait_error(page, expected)
        assert shown.startswith(expected), shown
        assert await page.is_visible("#register-form")

    assert _hs_registers(seen, synapse) == []
    assert _starts(seen, service) == []
    invite = await invite_row(service.app.database, token)
    assert invite.used_at is None
    assert invite.registration_attempts == 0
    assert await (await _admin(synapse)).user_created_at(f"@{localpart}:localhost") is None

    # "Suggest a strong password" fills both fields and shows what it chose.
    assert not await page.is_visible("#generated-password")
    await page.click("#generate-password")
    await page.wait_for_selector("#generated-password:not([hidden])")
    suggested = (await page.text_content("#generated-password-value") or "").strip()
    assert len(suggested) >= 20
    assert await page.input_value("#password") == suggested
    assert await page.input_value("#password-again") == suggested


# -- (4) expired and used invites ----------------------------------------------------------------


async def test_expired_used_and_lapsing_invites_show_the_neutral_section(
    sealroom: SealroomFactory, synapse: LocalSynapse, browser, page
) -> None:
    service = await _service(sealroom)

    # Expired before the page was opened.
    expired_url, expired_token = await _ticket(service, "T-EXPIRED")
    await expire_invite(service.app.database, expired_token)
    expired = await new_page(browser, VIEWPORT)
    await expired.goto(expired_url)
    await _assert_gone(expired)

    # Used already (redeemed for an existing account).
    used_url, used_token = await _ticket(service, "T-USED")
    someone = await synapse.register_user(_localpart("someone"), secrets.token_urlsafe(16))
    status, data = await service.redeem(someone, used_token)
    assert status == 200, data
    used = await new_page(browser, VIEWPORT)
    await used.goto(used_url)
    await _assert_gone(used)
    assert (await invite_row(service.app.database, used_token)).used_by == someone

    # Expires while the page is open: "Create my account" lands on the neutral section.
    lapsing_url, lapsing_token = await _ticket(service, "T-LAPSING")
    page = await prepare_page(page, VIEWPORT)
    seen = _record_requests(page)
    await _open_form(page, lapsing_url)
    localpart = _localpart("late")
    await _fill_account(page, localpart, _password())
    await _wait_status(page, "is available")
    await expire_invite(service.app.database, lapsing_token)
    await page.click("#create-account")
    await _assert_gone(page)
    assert len(_starts(seen, service)) == 1
    assert _hs_registers(seen, synapse) == []
    invite = await invite_row(service.app.database, lapsing_token)
    assert invite.used_at is None
    assert invite.registration_attempts == 0  # no registration token was minted
    assert await (await _admin(synapse)).user_created_at(f"@{localpart}:localhost") is None
    for other in (expired, used):
        await other.context.close()


# -- (5) the homeserver refuses the registration -------------------------------------------------


async def test_registration_refused_by_the_homeserver_creates_no_account(
    sealroom: SealroomFactory, synapse: LocalSynapse, page
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-REFUSED")
    admin = await _admin(synapse)
    minted: list[str] = []

    async def revoke_before_the_page_sees_it(route: Any) -> None:
        response = await route.fetch()
        registration_token = (await response.json())["registration_token"]
        minted.append(registration_token)
        await admin.delete_registration_token(registration_token)
        await route.fulfill(response=response)

    page = await prepare_page(page, VIEWPORT)
    seen = _record_requests(page)
    await page.route("**/i/register/start", revoke_before_the_page_sees_it)
    await _open_form(page, url)
    localpart = _localpart("refused")
    await _fill_account(page, localpart, _password())
    await _wait_status(page, "is available")
    await page.click("#create-account")

    message = await _wait_error(page, "refused")
    assert message.startswith("The chat server refused to create the account."), message
    assert "ask your support agent" in message
    assert not await page.is_visible("#retry-encryption")
    assert not await page.is_visible("#recovery")
    assert len(minted) == 1
    assert _hs_registers(seen, synapse), "the page never tried to register"

    assert await admin.user_created_at(f"@{localpart}:localhost") is None
    assert await admin.get_registration_token(minted[0]) is None
    invite = await invite_row(service.app.database, token)
    assert invite.used_at is None
    assert invite.used_by is None


async def test_after_a_refusal_trying_again_on_the_same_page_works(
    sealroom: SealroomFactory, synapse: LocalSynapse, page
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-REFUSED-AGAIN")
    admin = await _admin(synapse)
    minted: list[str] = []

    async def revoke_the_first_token(route: Any) -> None:
        response = await route.fetch()
        registration_token = (await response.json())["registration_token"]
        if not minted:
            await admin.delete_registration_token(registration_token)
        minted.append(registration_token)
        await route.fulfill(response=response)

    page = await prepare_page(page, VIEWPORT)
    await page.route("**/i/register/start", revoke_the_first_token)
    await _open_form(page, url)
    localpart = _localpart("persist")
    await _fill_account(page, localpart, _password())
    await _wait_status(page, "is available")
    await page.click("#create-account")
    await _wait_error(page, "refused")

    # The customer simply tries again (the registration token lapsing after 30 minutes on an
    # open page, e.g. after a "taken" name, ends the same way).
    await page.click("#create-account")
    outcome = page.locator("#recovery:not([hidden]), #register-error:not([hidden])").first
    await outcome.wait_for(timeout=REGISTER_TIMEOUT_MS)
    shown = await page.text_content("#register-error")
    assert await page.is_visible("#recovery"), f"still refused: {shown!r}"
    assert len(minted) == 2
    assert (await invite_row(service.app.database, token)).used_by == f"@{localpart}:localhost"


# -- (6) the network fails halfway through the encryption set-up ---------------------------------


async def test_network_error_during_encryption_set_up_can_be_retried(
    sealroom: SealroomFactory, synapse: LocalSynapse, page, js_client
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-NETWORK")
    failures: list[str] = []

    async def fail_the_first_backup(route: Any) -> None:
        if route.request.method == "POST" and not failures:
            failures.append(route.request.url)
            await route.abort("connectionreset")
        else:
            await route.continue_()

    page = await prepare_page(page, VIEWPORT)
    await page.route(f"{synapse.url}/_matrix/client/v3/room_keys/version", fail_the_first_backup)
    await _open_form(page, url)
    localpart = _localpart("flaky")
    password = _password()
    user_id = f"@{localpart}:localhost"
    await _fill_account(page, localpart, password)
    await _wait_status(page, "is available")
    await page.click("#create-account")

    message = await _wait_error(page, "setting up encryption failed")
    assert message.startswith(f"Your account {user_id} exists, but setting up encryption failed")
    assert "could not be reached" in message
    await page.wait_for_selector("#retry-encryption:not([hidden])")
    assert failures, "the backup request was never made"
    assert not await page.is_visible("#recovery")
    # The account exists; the invite is not spent before the encryption is set up.
    assert await (await _admin(synapse)).user_created_at(user_id) is not None
    assert (await invite_row(service.app.database, token)).used_at is None

    await page.click("#retry-encryption")
    await page.wait_for_selector("#recovery:not([hidden])", timeout=REGISTER_TIMEOUT_MS)
    recovery_key = (await page.text_content("#recovery-key") or "").strip()
    assert len(recovery_key.split()) == 12
    assert not await page.is_visible("#register-error")
    invite = await invite_row(service.app.database, token)
    assert invite.used_by == user_id

    # The second set-up is the one that counts: the key opens everything on a new device.
    customer = await js_client(user_id=user_id, password=password)
    opened = await customer.open_secret_storage(recovery_key)
    assert opened["key_ok"] is True
    assert all(opened["secrets"].values()), opened["secrets"]
    assert opened["own_device_cross_signed"] is True
    backup = await customer.backup_info()
    assert backup["trusted"] is True
    assert backup["matches_decryption_key"] is True


async def test_network_error_on_finish_can_be_retried_and_shows_the_key(
    sealroom: SealroomFactory, synapse: LocalSynapse, page
) -> None:
    service = await _service(sealroom)
    url, token = await _ticket(service, "T-FINISH-NET")
    failures: list[str] = []

    async def fail_the_first_finish(route: Any) -> None:
        if not failures:
            failures.append(route.request.url)
            await route.abort("connectionreset")
        else:
            await route.continue_()

    page = await prepare_page(page, VIEWPORT)
    await page.route("**/i/register/finish", fail_the_first_finish)
    await _open_form(page, url)
    localpart = _localpart("finish")
    user_id = f"@{localpart}:localhost"
    await _fill_account(page, localpart, _password())
    await _wait_status(page, "is available")
    await page.click("#create-account")
    await page.wait_for_selector("#register-error:not([hidden])", timeout=REGISTER_TIMEOUT_MS)
    message = (await page.text_content("#register-error") or "").strip()
    assert failures, "the finish request was never made"
    assert await (await _admin(synapse)).user_created_at(user_id) is not None
    assert (await invite_row(service.app.database, token)).used_at is None

    assert user_id in message, f"the page does not say the account exists: {message!r}"
    assert await page.is_visible("#retry-encryption"), f"no way to retry: {message!r}"
    await page.click("#retry-encryption")
    await page.wait_for_selector("#recovery:not([hidden])", timeout=REGISTER_TIMEOUT_MS)
    assert len((await page.text_content("#recovery-key") or "").split()) == 12
    assert (await invite_row(service.app.database, token)).used_by == user_id


# -- (7) the recovery key is shown once ----------------------------------------------------------


async def test_reloading_never_shows_the_recovery_key_again(
    sealroom: SealroomFactory, synapse: LocalSynapse, browser, page
) -> None:
    service = await _service(sealroom)

    # Reloaded while the key is on screen (before Continue).
    url, token = await _ticket(service, "T-RELOAD-1")
    page = await prepare_page(page, VIEWPORT)
    await _open_form(page, url)
    first = _localpart("reload")
    await _fill_account(page, first, _password())
    await _wait_status(page, "is available")
    key = await _create_and_wait_recovery(page)
    assert (await invite_row(service.app.database, token)).used_by == f"@{first}:localhost"
    await page.reload()
    await _assert_gone(page)
    assert (await page.text_content("#recovery-key") or "") == ""
    await _assert_key_kept_nowhere(page, service, key)

    # Reloaded after Continue, on the login instructions.
    url, token = await _ticket(service, "T-RELOAD-2")
    other = await new_page(browser, VIEWPORT)
    try:
        await _open_form(other, url)
        second = _localpart("again")
        await other.fill("#username", second)
        await _wait_status(other, "is available")
        await other.click("#generate-password")
        await other.wait_for_selector("#generated-password:not([hidden])")
        await screenshot(other, "register-form", full_page=True)
        key = await _create_and_wait_recovery(other)
        await screenshot(other, "register-recovery-key", full_page=True)
        await other.click("#recovery-continue")
        await other.fill("#recovery-check", " ".join(key.split()[:2]))  # typed back from a copy
        await other.click("#recovery-confirm")
        await other.wait_for_selector("#done:not([hidden])")
        await other.wait_for_selector("#new-account-help:not([hidden])")
        user_id = f"@{second}:localhost"
        assert await other.text_content("#login-username") == user_id
        assert await other.text_content("#login-homeserver") == synapse.url
        assert await other.text_content("#invited-as") == user_id
        await screenshot(other, "register-done", full_page=True)
        await _assert_key_kept_nowhere(other, service, key)
        await other.reload()
        await _assert_gone(other)
        await _assert_key_kept_nowhere(other, service, key)
        assert (await invite_row(service.app.database, token)).used_by == user_id
    finally:
        await other.context.close()


# -- (8) registration disabled -------------------------------------------------------------------


async def test_registration_disabled_has_no_form_and_start_is_refused(
    sealroom: SealroomFactory, page
) -> None:
    service = await sealroom()  # the default configuration
    url, token = await _ticket(service, "T-OFF")
    page = await prepare_page(page, VIEWPORT)
    seen = _record_requests(page)
    await page.goto(url)
    await page.wait_for_selector("#invite:not([hidden])")
    assert await page.locator("#register").count() == 0
    assert await page.locator("#register-form").count() == 0
    assert await page.get_by_text("Create an account").count() == 0
    assert not [u for _, u in seen if urlsplit(u).path.endswith("register.js")]

    status, data = await service.post_json("/i/register/start", {"token": token})
    assert status == 403
    assert data["errcode"] == "SEALROOM_REGISTRATION_DISABLED"
    status, data = await service.post_json(
        "/i/register/finish",
        {"token": token, "user_id": "@casey:localhost", "registration_token": "made-up"},
    )
    assert status == 403
    assert data["errcode"] == "SEALROOM_REGISTRATION_DISABLED"
    invite = await invite_row(service.app.database, token)
    assert invite.used_at is None
    assert invite.registration_attempts == 0


# -- (9) finish with an account sealroom did not mint --------------------------------------------


async def test_finish_with_an_unverified_account_is_refused(
    sealroom: SealroomFactory, synapse: LocalSynapse
) -> None:
    service = await _service(sealroom)
    _, token = await _ticket(service, "T-FINISH-A")
    _, other_token = await _ticket(service, "T-FINISH-B")
    status, started = await service.post_json("/i/register/start", {"token": token})
    assert status == 200, started
    status, other_started = await service.post_json("/i/register/start", {"token": other_token})
    assert status == 200, other_started
    ours = started["registration_token"]
    theirs = other_started["registration_token"]

    # A real account, made with the other invite's registration token.
    localpart = _localpart("other")
    status, made = await register_with_token(synapse, localpart, _password(), theirs)
    assert status == 200, made
    other_user = made["user_id"]
    # An existing account made without any registration token.
    existing = await synapse.register_user(_localpart("existing"), secrets.token_urlsafe(16))

    attempts = [
        ("@made-up-nobody:localhost", ours),
        (existing, ours),
        (other_user, ours),
        (other_user, theirs),
        (other_user, secrets.token_urlsafe(24)),
        (f"@{localpart}:evil.example", ours),
    ]
    for user_id, registration_token in attempts:
        status, data = await service.post_json(
            "/i/register/finish",
            {"token": token, "user_id": user_id, "registration_token": registration_token},
        )
        assert status == 403, (user_id, data)
        assert data["errcode"] == "SEALROOM_REGISTRATION_NOT_VERIFIED", data

    invite = await invite_row(service.app.database, token)
    assert invite.used_at is None
    assert invite.used_by is None
    other_invite = await invite_row(service.app.database, other_token)
    assert other_invite.used_at is None
    # The other invite's own, genuine finish still works.
    status, data = await service.post_json(
        "/i/register/finish",
        {"token": other_token, "user_id": other_user, "registration_token": theirs},
    )
    assert status == 200, data
    assert (await invite_row(service.app.database, other_token)).used_by == other_user
    assert (await invite_row(service.app.database, token)).used_at is None


# -- (10) too many starts on one invite ----------------------------------------------------------


async def test_more_than_five_starts_on_one_invite_answer_429(
    sealroom: SealroomFactory, synapse: LocalSynapse
) -> None:
    service = await _service(sealroom)
    _, token = await _ticket(service, "T-MANY")
    assert MAX_REGISTRATION_ATTEMPTS == 5
    for attempt in range(1, MAX_REGISTRATION_ATTEMPTS + 1):
        status, data = await service.post_json("/i/register/start", {"token": token})
        assert status == 200, (attempt, data)
    for _ in range(2):
        status, data = await service.post_json("/i/register/start", {"token": token})
        assert status == 429, data
        assert data["errcode"] == "SEALROOM_TOO_MANY_ATTEMPTS"
    invite = await invite_row(service.app.database, token)
    assert invite.registration_attempts == MAX_REGISTRATION_ATTEMPTS
    assert invite.used_at is None


async def _still_valid(synapse: LocalSynapse, tokens: list[str]) -> list[str]:
    """Which of `tokens` Synapse would still accept for a registration (its admin API)."""
    headers = {"Authorization": f"Bearer {await synapse.admin_token()}"}
    valid = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for token in tokens:
            url = f"{synapse.url}/_synapse/admin/v1/registration_tokens/{token}"
            async with http.get(url, headers=headers) as response:
                if response.status == 404:
                    continue
                assert response.status == 200, await response.text()
                found = await response.json()
            uses = found["uses_allowed"]
            if uses is None or found["completed"] + found["pending"] < uses:
                valid.append(token)
    return valid


async def test_at_most_one_registration_token_per_invite_is_valid_at_any_time(
    sealroom: SealroomFactory, synapse: LocalSynapse
) -> None:
    service = await _service(sealroom)
    _, token = await _ticket(service, "T-ONE-TOKEN")
    minted: list[str] = []
    for attempt in range(MAX_REGISTRATION_ATTEMPTS):
        status, data = await service.post_json("/i/register/start", {"token": token})
        assert status == 200, (attempt, data)
        minted.append(data["registration_token"])

        assert await _still_valid(synapse, minted) == [minted[-1]], attempt

    status, _ = await service.post_json(
        "/i/register/abandon", {"token": token, "registration_token": minted[-1]}
    )
    assert status == 200
    assert await _still_valid(synapse, minted) == []
