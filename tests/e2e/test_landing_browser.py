"""The customer's landing page in a real browser against a real running service.

Every test opens the invite link the way a customer does (Debian's Chromium, Playwright) and
checks what they see and what their browser sends. Screenshots of each state go to
docs/images/landing-<state>.png so the documentation shows the page as it really is.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import text

from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.browser import UI_TIMEOUT_MS, new_page, prepare_page, screenshot
from tests.support.fixtures import MatrixUserFactory
from tests.support.rows import expire_invite, invite_row

pytestmark = pytest.mark.timeout(120)

VIEWPORT = {"width": 800, "height": 700}
SECTIONS = ("loading", "gone", "unavailable", "invite", "done")


async def _open(page: Any, url: str) -> tuple[str, Any]:
    """Open `url` and wait until the script has decided; return the one visible section."""
    response = await page.goto(url)
    await page.wait_for_selector("#loading", state="hidden")
    visible = [name for name in SECTIONS if await page.is_visible(f"#{name}")]
    assert len(visible) == 1, f"expected exactly one visible section, got {visible}"
    return visible[0], response


async def _gone_text(page: Any) -> tuple[str, str]:
    heading = await page.text_content("#gone h2")
    message = await page.text_content("#gone-message")
    return (heading or "").strip(), (message or "").strip()


async def _assert_gone(page: Any) -> tuple[str, str]:
    """The neutral page: no form to type a Matrix ID into, a way forward in plain words."""
    assert await page.is_visible("#gone")
    assert not await page.is_visible("#invite")
    assert not await page.is_visible("#redeem-form")
    assert not await page.is_visible("#user-id")
    assert not await page.is_visible("#done")
    heading, message = await _gone_text(page)
    assert heading == "This link can no longer be used"
    assert "Ask your support agent for a new link" in message
    return heading, message


async def _redeem_in_page(page: Any, user_id: str) -> None:
    await page.fill("#user-id", user_id)
    await page.click("#redeem")


async def _open_ticket(service: Sealroom, ticket: str) -> tuple[dict[str, Any], str]:
    opened = await service.open_ticket(ticket)
    return opened, service.tokens[-1]


async def test_invalid_matrix_id_shows_an_error_and_the_link_still_works(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page
) -> None:
    customer = await matrix_user("customer")
    service = await sealroom()
    opened, token = await _open_ticket(service, "T-810")
    page = await prepare_page(page, VIEWPORT)

    state, _ = await _open(page, opened["invite_url"])
    assert state == "invite"
    assert await page.text_content("#ticket-ref") == "T-810"
    assert await page.text_content("#subject") == "Admin login for T-810"
    await screenshot(page, "landing-invite")

    # Caught in the browser (no @, an e-mail address): nothing is sent, a clear message shows.
    await _redeem_in_page(page, "casey@example.org")
    alert = page.get_by_role("alert")
    await alert.wait_for(state="visible")
    assert "This is not a Matrix address" in (await alert.text_content() or "")
    assert await page.is_visible("#invite")
    await screenshot(page, "landing-invalid-id")

    # Passes the browser's check but not the server's (a host name cannot start with "-"):
    # the server's message shows in the same place, and the link is not spent.
    async with page.expect_response("**/i/redeem") as answer:
        await _redeem_in_page(page, "@casey:-example.org")
    assert (await answer.value).status == 400
    await page.wait_for_function("!document.getElementById('redeem').disabled")
    assert "This is not a Matrix address" in (await alert.text_content() or "")
    assert await alert.is_visible()
    assert await page.is_visible("#invite")
    assert not await page.is_disabled("#redeem")
    assert (await invite_row(service.app.database, token)).used_at is None

    # Well-formed, on the bot's own homeserver, but no such account (a typo): told so before
    # anything is spent, and the link stays usable.
    await _redeem_in_page(page, f"@typo-{secrets.token_hex(4)}:localhost")
    await page.locator("#error", has_text="no account with this Matrix address").wait_for()
    assert await page.is_visible("#invite")
    assert (await invite_row(service.app.database, token)).used_at is None

    # A valid ID now succeeds with the same link, the error disappears, the invite arrives.
    await _redeem_in_page(page, f"  {customer.user_id} ")
    await page.wait_for_selector("#done:not([hidden])")
    assert await page.text_content("#invited-as") == customer.user_id
    assert not await page.is_visible("#error")
    matrix_to = await page.get_attribute("#matrix-to", "href")
    assert matrix_to is not None
    assert matrix_to.startswith("https://matrix.to/#/%23sealroom-")
    await screenshot(page, "landing-done")

    room_id = await service.wait_for_room(opened["session_id"])
    assert await customer.wait_for_invite(room_id) == room_id
    assert (await invite_row(service.app.database, token)).used_by == customer.user_id


async def test_used_link_shows_the_neutral_page_without_the_form(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page, browser
) -> None:
    customer = await matrix_user("customer", start=False)
    service = await sealroom()
    opened, _ = await _open_ticket(service, "T-820")
    page = await prepare_page(page, VIEWPORT)
    stale_tab = await new_page(browser, VIEWPORT)
    try:
        # A second tab opened before the link is used, still showing the form.
        assert (await _open(stale_tab, opened["invite_url"]))[0] == "invite"

        assert (await _open(page, opened["invite_url"]))[0] == "invite"
        await _redeem_in_page(page, customer.user_id)
        await page.wait_for_selector("#done:not([hidden])")

        # Opened again (a new tab, as from the e-mail once more): the link is used up.
        again = await page.context.new_page()
        again.set_default_timeout(UI_TIMEOUT_MS)
        state, response = await _open(again, opened["invite_url"])
        assert state == "gone"
        assert response.status == 200  # the page itself; the lookup says 410
        await _assert_gone(again)
        await screenshot(again, "landing-gone")

        # The stale tab's form cannot spend it a second time either.
        await _redeem_in_page(stale_tab, "@someone-else:localhost")
        await stale_tab.wait_for_selector("#gone:not([hidden])")
        await _assert_gone(stale_tab)
    finally:
        await stale_tab.context.close()
    row = await service.session_row(opened["session_id"])
    assert row.customer_user_id == customer.user_id


async def test_unknown_token_and_missing_fragment_show_the_neutral_page(
    sealroom: SealroomFactory, page
) -> None:
    service = await sealroom()
    await _open_ticket(service, "T-830")  # a real invite exists, but is not the one asked for
    page = await prepare_page(page, VIEWPORT)

    urls = {
        "unknown token": f"{service.url}/i#{secrets.token_urlsafe(32)}",
        "junk fragment": f"{service.url}/i#not-a-token",
        "no fragment": f"{service.url}/i",
        "empty fragment": f"{service.url}/i#",
    }
    seen: dict[str, tuple[str, str]] = {}
    for name, url in urls.items():
        fresh = await page.context.new_page()
        fresh.set_default_timeout(UI_TIMEOUT_MS)
        state, _ = await _open(fresh, url)
        assert state == "gone", name
        seen[name] = await _assert_gone(fresh)
        await fresh.close()
    # Whatever is wrong with the link, the customer learns nothing more than "ask for a new one".
    assert seen["unknown token"] == seen["junk fragment"]
    assert {heading for heading, _ in seen.values()} == {"This link can no longer be used"}


async def test_expired_link_shows_the_neutral_page(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page
) -> None:
    service = await sealroom()
    opened, token = await _open_ticket(service, "T-840")
    unknown = f"{service.url}/i#{secrets.token_urlsafe(32)}"
    page = await prepare_page(page, VIEWPORT)
    assert (await _open(page, opened["invite_url"]))[0] == "invite"

    await expire_invite(service.app.database, token)

    expired = await page.context.new_page()
    expired.set_default_timeout(UI_TIMEOUT_MS)
    assert (await _open(expired, opened["invite_url"]))[0] == "gone"
    expired_text = await _assert_gone(expired)

    # The tab opened before it expired cannot use it either.
    await _redeem_in_page(page, "@casey:localhost")
    await page.wait_for_selector("#gone:not([hidden])")
    await _assert_gone(page)
    assert (await invite_row(service.app.database, token)).used_at is None

    # Expired reads exactly like unknown: nobody learns that the link once existed.
    other = await page.context.new_page()
    other.set_default_timeout(UI_TIMEOUT_MS)
    assert (await _open(other, unknown))[0] == "gone"
    assert await _gone_text(other) == expired_text


async def test_opening_the_page_never_uses_up_the_invite(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page, browser
) -> None:
    customer = await matrix_user("customer", start=False)
    service = await sealroom()
    opened, token = await _open_ticket(service, "T-850")
    page = await prepare_page(page, VIEWPORT)
    scanner = await new_page(browser, VIEWPORT)  # e.g. a mail provider's link scanner
    try:
        assert (await _open(scanner, opened["invite_url"]))[0] == "invite"
        await scanner.reload()
        await scanner.wait_for_selector("#invite:not([hidden])")
        assert (await _open(page, opened["invite_url"]))[0] == "invite"
        assert (await invite_row(service.app.database, token)).used_at is None

        await _redeem_in_page(page, customer.user_id)
        await page.wait_for_selector("#done:not([hidden])")
        assert await page.text_content("#invited-as") == customer.user_id
    finally:
        await scanner.context.close()
    invite = await invite_row(service.app.database, token)
    assert invite.used_at is not None
    assert invite.used_by == customer.user_id


def _record_requests(page: Any) -> tuple[list[Any], list[str]]:
    requests: list[Any] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request))
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    return requests, console


async def _walk_through(page: Any, invite_url: str, user_id: str) -> None:
    """The whole customer visit: open, one typo, then the right ID."""
    assert (await _open(page, invite_url))[0] == "invite"
    await _redeem_in_page(page, "@casey:-example.org")
    await page.get_by_role("alert").wait_for(state="visible")
    await _redeem_in_page(page, user_id)
    await page.wait_for_selector("#done:not([hidden])")


async def test_page_loads_nothing_external_and_runs_no_inline_script(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page
) -> None:
    customer = await matrix_user("customer", start=False)
    service = await sealroom()
    opened, _ = await _open_ticket(service, "T-860")
    page = await prepare_page(page, VIEWPORT)
    requests, console = _record_requests(page)

    await _walk_through(page, opened["invite_url"], customer.user_id)

    urls = [request.url for request in requests]
    assert urls, "no request recorded"
    outside = [url for url in urls if not url.startswith(f"{service.url}/")]
    assert outside == []
    paths = {request.url.split("#", 1)[0].removeprefix(service.url) for request in requests}
    assert {"/i", "/i/lookup", "/i/redeem"} <= paths
    assert any(path.startswith("/static/") and path.endswith(".js") for path in paths)
    violations = [text for text in console if "Content Security Policy" in text]
    assert violations == []
    assert not [text for text in console if text.startswith("pageerror:")]
    # The markup itself carries no script: no inline <script>, no on* handler attributes.
    inline = await page.evaluate(
        """() => ({
            scripts: document.querySelectorAll("script:not([src])").length,
            handlers: [...document.querySelectorAll("*")].flatMap(
                (el) => [...el.attributes].map((a) => a.name).filter((n) => n.startsWith("on"))
            ),
            styles: document.querySelectorAll("style, [style]").length,
        })"""
    )
    assert inline == {"scripts": 0, "handlers": [], "styles": 0}


async def test_landing_page_response_headers(sealroom: SealroomFactory, page) -> None:
    service = await sealroom()
    opened, _ = await _open_ticket(service, "T-870")
    page = await prepare_page(page, VIEWPORT)
    _, response = await _open(page, opened["invite_url"])
    assert response.status == 200
    assert response.request.method == "GET"
    headers = await response.all_headers()
    csp = headers["content-security-policy"]
    directives = {
        part.split()[0]: part.split()[1:] for part in (p.strip() for p in csp.split(";")) if part
    }
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-type"].startswith("text/html")


async def test_invite_token_travels_only_in_post_bodies(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page
) -> None:
    customer = await matrix_user("customer", start=False)
    service = await sealroom()
    opened, token = await _open_ticket(service, "T-880")
    page = await prepare_page(page, VIEWPORT)
    requests, _ = _record_requests(page)

    await _walk_through(page, opened["invite_url"], customer.user_id)

    carried_in_body: list[str] = []
    for request in requests:
        # A fragment never goes on the wire; should the driver report one, it is not "sent".
        sent_url = request.url.split("#", 1)[0]
        assert token not in sent_url, f"token in the URL of {request.method} {sent_url}"
        headers = await request.all_headers()
        leaked = {name for name, value in headers.items() if token in value}
        assert not leaked, f"token in headers {leaked} of {request.method} {sent_url}"
        if token in (request.post_data or ""):
            assert request.method == "POST"
            carried_in_body.append(sent_url.removeprefix(service.url))
    assert sorted(carried_in_body) == ["/i/lookup", "/i/redeem", "/i/redeem"]
    # And so the service never saw it anywhere but in a body: its log does not hold it.
    service.log_stream.flush()
    assert token not in service.log_path.read_text(encoding="utf-8")


# -- defects found earlier, now fixed ----------------------------------------------------------


async def test_malformed_fragment_shows_the_neutral_page(sealroom: SealroomFactory, page) -> None:
    service = await sealroom()
    page = await prepare_page(page, VIEWPORT)
    await page.goto(f"{service.url}/i#%E0%A4%A")
    with contextlib.suppress(PlaywrightTimeoutError):
        await page.wait_for_selector("#loading", state="hidden", timeout=5_000)
    assert await page.is_visible("#gone")


async def test_server_error_does_not_declare_the_link_dead(
    sealroom: SealroomFactory, page
) -> None:
    service = await sealroom()
    opened, _ = await _open_ticket(service, "T-890")
    page = await prepare_page(page, VIEWPORT)
    # A real fault in the running service: its invites table is briefly unreachable (500).
    async with service.app.database.transaction() as db:
        await db.execute(text("ALTER TABLE invites RENAME TO invites_away"))
    try:
        shown, _ = await _open(page, opened["invite_url"])
    finally:
        async with service.app.database.transaction() as db:
            await db.execute(text("ALTER TABLE invites_away RENAME TO invites"))
    assert (await _open(await page.context.new_page(), opened["invite_url"]))[0] == "invite"
    assert shown == "unavailable"
    assert "still valid" in await page.text_content("#unavailable-message")
