"""axe-core (npm, pinned in tests/a11y/package.json) run inside a Playwright page.

axe is evaluated through the DevTools protocol, which the page's CSP (`script-src 'self'`)
does not govern, so the page under test is exactly the one customers get.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.npm import npm_ci

A11Y_DIR = Path(__file__).resolve().parents[1] / "a11y"
AXE_SCRIPT = A11Y_DIR / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0/2.1/2.2 A and AA, plus axe's best practices (landmarks, headings, regions).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]

_lock = asyncio.Lock()
_source: str | None = None


async def axe_source() -> str:
    """axe.min.js, installed with `npm ci` in tests/a11y first if needed; skipped without npm
    unless CI=true."""
    global _source
    async with _lock:
        if _source is not None:
            return _source
        await npm_ci(A11Y_DIR, "axe-core")
        _source = AXE_SCRIPT.read_text(encoding="utf-8")
        return _source


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now: rule id, impact, and the offending nodes."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(await axe_source())
    result: dict[str, Any] = await page.evaluate(
        """async (tags) => {
            const results = await axe.run(document, {
                runOnly: { type: "tag", values: tags },
                resultTypes: ["violations"],
            });
            return { violations: results.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({ target: n.target, summary: n.failureSummary })),
            })) };
        }""",
        AXE_TAGS,
    )
    return list(result["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per offending node, for an assertion message a person can act on."""
    lines = []
    for violation in violations:
        for node in violation["nodes"]:
            lines.append(
                f"{violation['id']} ({violation['impact']}): {violation['help']} at "
                f"{node['target']}: {node['summary']}"
            )
    return "\n".join(lines)
