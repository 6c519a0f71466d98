"""The OpenAPI document: it lists every route of the app and nothing else, and schemathesis,
driven by it against the in-process app, finds no 500 and no answer the document does not allow.

schemathesis sends its requests with `requests` (synchronous), so the app runs on its own loop in
a thread on 127.0.0.1 (tests/support/api_app.py). Bounded: a fixed number of examples per
operation, derandomized (the same examples every run), no example database, a timeout per test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.helpdesk.kinds.standard_webhooks import sign
from bridge.web import openapi
from bridge.web.errors import STATUS
from tests.support.api_app import API_TOKEN, WEBHOOK_SECRET, ApiApp, serve_in_thread

DOCUMENT = openapi.document()
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = sorted(
    (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
)


def _app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route, without aiohttp's implicit HEADs and the static
    files folder (not an API: it serves the landing page's scripts and styles)."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if route.method == "HEAD" or path is None:
            continue
        found.add((route.method, path))
    return found


async def test_every_route_is_in_the_document_and_nothing_else(tmp_path: Path) -> None:
    built = await ApiApp.build(tmp_path / "sealroom.db")
    try:
        routes = _app_routes(built.app)
    finally:
        await built.database.close()

    assert routes == set(OPERATIONS)


def test_every_operation_documents_the_statuses_any_handler_can_answer() -> None:
    """500 (the middleware's last resort) everywhere; a request body can be unreadable (400), too
    large (413) or too slow (408); the session API's token can be missing (401) or not
    configured (403); and every status of bridge/web/errors.py's table is documented somewhere."""
    documented: set[int] = set()
    for method, path in OPERATIONS:
        operation = DOCUMENT["paths"][path][method.lower()]
        statuses = {int(status) for status in operation["responses"]}
        documented |= statuses
        assert 500 in statuses, (method, path)
        if "requestBody" in operation:
            assert {400, 408, 413} <= statuses, (method, path)
        if operation.get("security"):
            assert {401, 403} <= statuses, (method, path)
        for status, response in operation["responses"].items():
            # /readyz's 503 is its report (which check failed), not an error.
            if int(status) >= 400 and (path, status) != ("/readyz", "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)

    assert set(STATUS.values()) <= documented


def test_the_document_is_json_and_schemathesis_reads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(json.loads(openapi.document_bytes()))

    operations = [result.ok() for result in schema.get_all_operations()]

    assert sorted((op.method.upper(), op.path) for op in operations) == OPERATIONS


# -- schemathesis against the running app --------------------------------------------------------


def _signed_webhook(base_url: str, payload: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    raw = json.dumps(payload).encode()
    timestamp = int(time.time())
    response = requests.post(
        f"{base_url}/hooks/helpdesk",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(WEBHOOK_SECRET, webhook_id, timestamp, raw),
        },
        timeout=10,
    )
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """The app with a few sessions in it (so lists and details have something to show):
    (base URL, their ids)."""
    with serve_in_thread(tmp_path_factory.mktemp("openapi") / "sealroom.db") as (base_url, _):
        ids = [
            _signed_webhook(
                base_url,
                {"event": "open", "ticket": {"id": f"T-{n}"}, "agent": "alice@example.com"},
                f"msg_seed_{n}",
            )["session_id"]
            for n in range(3)
        ]
        _signed_webhook(base_url, {"event": "close", "ticket": {"id": "T-0"}}, "msg_seed_close")
        yield base_url, ids


def _documented(method: str, path: str, response: requests.Response) -> None:
    """The status is one the document lists for the operation, and the body fits its schema."""
    responses = DOCUMENT["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in responses, (method, path, response.status_code)
    schemathesis.openapi.from_dict(DOCUMENT)[path][method].validate_response(response)


def test_the_happy_paths_answer_as_documented(served: tuple[str, list[str]]) -> None:
    """What generated requests rarely reach (a signed webhook, a live invite, an account being
    made), driven by hand: every answer is one the document describes."""
    base_url, _ = served

    def webhook(payload: dict[str, Any], webhook_id: str) -> requests.Response:
        raw = json.dumps(payload).encode()
        timestamp = int(time.time())
        return requests.post(
            f"{base_url}/hooks/helpdesk",
            data=raw,
            headers={
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(WEBHOOK_SECRET, webhook_id, timestamp, raw),
            },
            timeout=10,
        )

    def post(path: str, body: dict[str, Any]) -> requests.Response:
        response = requests.post(f"{base_url}{path}", json=body, timeout=10)
        _documented("POST", path, response)
        return response

    open_payload = {"event": "open", "ticket": {"id": "T-happy"}, "agent": "alice@example.com"}
    answers = {
        "created": webhook(open_payload, "msg_happy_1"),
        "replayed": webhook(open_payload, "msg_happy_1"),
        "reused": webhook(open_payload, "msg_happy_2"),
    }
    token = answers["reused"].json()["invite_url"].split("#", 1)[1]
    lookup = post("/i/lookup", {"token": token})
    started = post("/i/register/start", {"token": token})
    abandoned = post(
        "/i/register/abandon",
        {"token": token, "registration_token": started.json()["registration_token"]},
    )
    redeemed = post("/i/redeem", {"token": token, "user_id": "@customer:example.net"})
    answers["closing"] = webhook(
        {"event": "close", "ticket": {"id": "T-happy"}}, "msg_happy_close"
    )
    for response in answers.values():
        _documented("POST", "/hooks/{integration}", response)
    for path in ("/healthz", "/readyz", "/metrics", "/i", "/api/v1/openapi.json"):
        _documented("GET", path, requests.get(f"{base_url}{path}", timeout=10))

    assert [r.status_code for r in answers.values()] == [201, 201, 200, 202]
    assert answers["replayed"].json()["replayed"] is True
    assert [r.status_code for r in (lookup, started, abandoned, redeemed)] == [200] * 4


def _run(
    base_url: str,
    method: str,
    path: str,
    mode: GenerationMode,
    path_parameters: dict[str, str] | None = None,
) -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    operation = schema[path][method]
    secured = bool(DOCUMENT["paths"][path][method.lower()].get("security"))
    checks = [*CHECKS, ignored_auth] if secured else CHECKS
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers=AUTH, checks=checks, timeout=10)

    check()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_schemathesis_finds_no_500_and_no_answer_outside_the_document(
    served: tuple[str, list[str]], method: str, path: str
) -> None:
    base_url, _ = served
    _run(base_url, method, path, GenerationMode.POSITIVE)
    operation = DOCUMENT["paths"][path][method.lower()]
    if operation.get("parameters") or operation.get("requestBody"):
        _run(base_url, method, path, GenerationMode.NEGATIVE)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/sessions/{session_id}"), ("POST", "/api/v1/sessions/{session_id}/close")],
)
def test_schemathesis_on_sessions_that_exist(
    served: tuple[str, list[str]], method: str, path: str
) -> None:
    """Generated ids are unknown (404): these runs use the seeded sessions, so the detail and
    the close answers (202, then 409) are checked against the document too."""
    base_url, ids = served
    for session_id in ids:
        _run(base_url, method, path, GenerationMode.POSITIVE, {"session_id": session_id})
