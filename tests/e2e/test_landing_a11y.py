"""The customer's page is usable by everyone: axe-core finds no violation in any state, in
light and dark mode, on a 320 px phone and a desktop, in every language; and a keyboard alone
completes both paths (an existing account, a new account).

Real parts throughout: Debian's Chromium (Playwright), a running sealroom with the branding
section set, a real Synapse for the existing account and for the account made in the browser.
One service per language, and every state is checked in its four looks by changing the colour
scheme and the viewport of the same page (no reload), to keep the suite quick.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bridge.i18n import LANGUAGES, translations
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.axe import axe_violations, describe
from tests.support.browser import UI_TIMEOUT_MS
from tests.support.fixtures import MatrixUserFactory

pytestmark = pytest.mark.timeout(240)

PHONE = {"width": 320, "height": 568}
DESKTOP = {"width": 1280, "height": 800}
LOOKS = [
    (scheme, name, size)
    for scheme in ("light", "dark")
    for name, size in (("320px", PHONE), ("desktop", DESKTOP))
]
# Each language's locale as a browser sends it (Accept-Language): the page must pick it.
BROWSER_LOCALES = {"en": "en-GB", "de": "de-DE", "fr": "fr-FR", "es": "es-ES"}
LOGO = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="32" viewBox="0 0 64 32">'
    b'<rect width="64" height="32" rx="6" fill="#0b5d1e"/></svg>'
)
NEW_PASSWORD = "Correct-Horse-" + secrets.token_hex(6)


@pytest_asyncio.fixture(loop_scope="session")
async def branded(sealroom: SealroomFactory, tmp_path: Path) -> Sealroom:
    """A service that offers account creation and carries an organisation's branding."""
    logo = tmp_path / "logo.svg"
    logo.write_bytes(LOGO)
    return await sealroom(
        admin_token=True,
        registration={"enabled": True},
        branding={
            "organisation": "Example Support",
            "logo_file": str(logo),
            "accent_colour": "#0b5d1e",
            "support_contact": "help@example.org",
            "support_url": "mailto:help@example.org",
            "footer_links": [{"text": "Privacy policy", "url": "https://example.org/privacy"}],
        },
    )


@pytest_asyncio.fixture(loop_scope="session")
async def context_for(browser: Any) -> AsyncIterator[Any]:
    """``await context_for("de")``: a fresh browser profile whose language is German."""
    contexts: list[Any] = []

    async def make(language: str) -> Any:
        context = await browser.new_context(locale=BROWSER_LOCALES[language], viewport=DESKTOP)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()


async def _new_page(context: Any) -> Any:
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


class Audit:
    """Runs axe on each state in the four looks and keeps every violation."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.checked: list[str] = []
        self.failures: list[str] = []

    async def check(self, page: Any, state: str) -> None:
        assert await page.evaluate("document.documentElement.lang") == self.language, state
        for scheme, width, size in LOOKS:
            await page.emulate_media(color_scheme=scheme)
            await page.set_viewport_size(size)
            violations = await axe_violations(page)
            self.checked.append(f"{state}/{scheme}/{width}")
            if violations:
                self.failures.append(
                    f"[{self.language} {state} {scheme} {width}]\n{describe(violations)}"
                )
        await page.emulate_media(color_scheme="light")
        await page.set_viewport_size(DESKTOP)


def _t(language: str, message: str) -> str:
    return translations(language).gettext(message)


async def _visible(page: Any, selector: str) -> None:
    await page.wait_for_selector(f"{selector}:not([hidden])")


@pytest.mark.parametrize("language", list(LANGUAGES))
async def test_every_state_passes_axe_in_both_modes_both_widths(
    language: str,
    branded: Sealroom,
    context_for: Any,
    matrix_user: MatrixUserFactory,
) -> None:
    customer = await matrix_user(f"customer-{language}", start=False)
    context = await context_for(language)
    audit = Audit(language)

    # A link that can no longer be used.
    page = await _new_page(context)
    await page.goto(f"{branded.url}/i#{secrets.token_urlsafe(32)}")
    await _visible(page, "#gone")
    assert await page.text_content("#gone h2") == _t(language, "This link can no longer be used")
    await audit.check(page, "gone")

    # sealroom is briefly failing (the lookup answers 500): the link is still valid.
    opened = await branded.open_ticket(f"T-A11Y-{language}")
    page = await _new_page(context)
    await page.route("**/i/lookup", lambda route: route.fulfill(status=500, json={}))
    await page.goto(opened["invite_url"])
    await _visible(page, "#unavailable")
    await audit.check(page, "unavailable")

    # The invite, with both paths; on a phone, "Create an account" is in the first screen.
    page = await _new_page(context)
    await page.goto(opened["invite_url"])
    await _visible(page, "#invite")
    await audit.check(page, "invite")
    await page.set_viewport_size(PHONE)
    heading = await page.locator("#register h2").bounding_box()
    assert heading["y"] + heading["height"] <= PHONE["height"], (
        "Create an account is below the fold"
    )
    await page.set_viewport_size(DESKTOP)

    # Existing account: a mistake, then the right address.
    await page.fill("#user-id", "casey@example.org")
    await page.click("#redeem")
    await _visible(page, "#error")
    assert await page.get_attribute("#user-id", "aria-invalid") == "true"
    await audit.check(page, "existing-account error")
    await page.fill("#user-id", customer.user_id)
    await page.click("#redeem")
    await _visible(page, "#done")
    assert await page.evaluate("document.activeElement.id") == ""
    assert await page.evaluate("document.activeElement.closest('#done') !== null")
    assert await page.text_content("#announce") == _t(language, "You are invited")
    await audit.check(page, "done (existing account)")

    # A new account, made in the browser: a mistake, then the recovery key and its check.
    opened = await branded.open_ticket(f"T-A11Y-NEW-{language}")
    page = await _new_page(context)
    await page.goto(opened["invite_url"])
    await _visible(page, "#register")
    localpart = f"a11y-{language}-{secrets.token_hex(3)}"
    await page.fill("#username", localpart)
    await page.fill("#password", NEW_PASSWORD)
    await page.fill("#password-again", NEW_PASSWORD + "x")
    await page.click("#create-account")
    await _visible(page, "#register-error")
    await audit.check(page, "registration error")
    await page.fill("#password-again", NEW_PASSWORD)
    await page.click("#create-account")
    await page.wait_for_selector("#recovery:not([hidden])", timeout=60_000)
    assert await page.evaluate("document.activeElement.closest('#recovery') !== null")
    await audit.check(page, "recovery key")
    key = (await page.text_content("#recovery-key") or "").strip()
    await page.click("#recovery-continue")
    await _visible(page, "#recovery-check-step")
    assert await page.text_content("#recovery-key") == ""  # off the screen while it is checked
    await page.fill("#recovery-check", "AAAA BBBB")
    await page.click("#recovery-confirm")
    await _visible(page, "#recovery-check-error")
    await audit.check(page, "recovery key check error")
    await page.fill("#recovery-check", " ".join(key.split()[:2]))
    await page.click("#recovery-confirm")
    await _visible(page, "#done")
    await _visible(page, "#new-account-help")
    await audit.check(page, "done (new account)")

    assert len(audit.checked) == 9 * len(LOOKS)
    assert audit.failures == [], "\n\n".join(audit.failures)


async def _tab_to(page: Any, element_id: str, limit: int = 60) -> None:
    """Press Tab until `element_id` has the focus, as a keyboard user would."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if (
            await page.evaluate("document.activeElement && document.activeElement.id")
            == element_id
        ):
            return
    pytest.fail(f"#{element_id} cannot be reached with the Tab key")


async def test_a_keyboard_alone_completes_both_paths(
    branded: Sealroom, context_for: Any, matrix_user: MatrixUserFactory
) -> None:
    customer = await matrix_user("keyboard-customer", start=False)
    context = await context_for("en")

    # An existing account.
    opened = await branded.open_ticket("T-KEYS-1")
    page = await _new_page(context)
    await page.goto(opened["invite_url"])
    await _visible(page, "#invite")
    await _tab_to(page, "user-id")
    await page.keyboard.type(customer.user_id)
    await page.keyboard.press("Enter")
    await _visible(page, "#done")
    assert await page.evaluate("document.activeElement.textContent") == "You are invited"
    room_id = await branded.wait_for_room(opened["session_id"])
    await customer.start()
    assert await customer.wait_for_invite(room_id) == room_id

    # A new account, the recovery key typed back.
    opened = await branded.open_ticket("T-KEYS-2")
    page = await _new_page(context)
    await page.goto(opened["invite_url"])
    await _visible(page, "#register")
    localpart = f"keys-{secrets.token_hex(3)}"
    await _tab_to(page, "username")
    await page.keyboard.type(localpart)
    await page.keyboard.press("Tab")
    await page.keyboard.type(NEW_PASSWORD)
    await page.keyboard.press("Tab")
    await page.keyboard.type(NEW_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#recovery:not([hidden])", timeout=60_000)
    key = (await page.text_content("#recovery-key") or "").strip()  # the customer's saved copy
    await _tab_to(page, "recovery-continue")
    await page.keyboard.press("Enter")
    await _visible(page, "#recovery-check-step")
    await _tab_to(page, "recovery-check")
    await page.keyboard.type(key.replace(" ", "")[:8])
    await page.keyboard.press("Enter")
    await _visible(page, "#done")
    assert await page.text_content("#login-username") == f"@{localpart}:localhost"
    assert await page.evaluate("document.activeElement.textContent") == "You are invited"


async def test_the_audit_would_notice_a_violation(page: Any) -> None:
    """The old dark-mode error colour (#b00020 on a dark page, 2.6:1) is caught."""
    page.set_default_timeout(UI_TIMEOUT_MS)
    await page.set_content(
        '<!doctype html><html lang="en"><head><title>t</title></head><body>'
        '<main><h1>Heading</h1><p id="e" class="e">An error message</p></main></body></html>'
    )
    await page.add_style_tag(
        content="body { background: #121212; color: #ececec; } .e { color: #b00020; }"
    )

    violations = await axe_violations(page)

    assert [v["id"] for v in violations] == ["color-contrast"]
    assert violations[0]["nodes"][0]["target"] == ["#e"]
