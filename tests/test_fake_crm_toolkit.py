"""The fake-CRM toolkit over real HTTP: faults before and after the work, rate limiting, paging, OAuth grants."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.responses import Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    OAuthGrants,
    absolute_url,
    bad_request,
    bearer_token,
    cursor_offset,
    make_cursor,
    offset_page,
)

JsonDict = dict[str, object]


class NoteCrm(FakeCrm):
    """The smallest fake: notes behind a static bearer key, offset paging with absolute next URLs."""

    crm_name = "NoteCrm"
    KEY = "key-1"

    def init_state(self) -> None:
        self.notes: dict[int, JsonDict] = {}

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("POST", "/notes", self._create),
            FakeRoute("GET", "/notes", self._list),
            FakeRoute("GET", "/open", self._open, auth=False),
        ]

    def authenticate(self, request: FakeRequest) -> bool:
        return bearer_token(request.headers.get("authorization", "")) == self.KEY

    def error_body(self, status: int, message: str, extra: JsonDict) -> object:
        return {"errors": [{"status": status, "detail": message}]}

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}

    async def _create(self, request: FakeRequest) -> Response:
        body = request.json_object()
        if not isinstance(body.get("text"), str):
            raise bad_request("text is required")
        note_id = self.next_id("note")
        with self._lock:
            self.notes[note_id] = {"id": note_id, "text": body["text"]}
        return self.json({"data": self.notes[note_id]}, status=201)

    async def _list(self, request: FakeRequest) -> Response:
        offset = cursor_offset(request.query.get("cursor"))
        limit = request.int_param("limit", 2, minimum=1) or 2
        with self._lock:
            page, more = offset_page(
                sorted(self.notes.values(), key=lambda n: int(str(n["id"]))), offset, limit
            )
        following = absolute_url(request, cursor=make_cursor(offset + limit)) if more else None
        return self.json({"data": page, "next": following})

    async def _open(self, request: FakeRequest) -> Response:
        return self.json({"ok": True})


@pytest.fixture(scope="module")
def _note_server() -> Iterator[NoteCrm]:
    with NoteCrm() as fake:
        yield fake


@pytest.fixture
def fake(_note_server: NoteCrm) -> NoteCrm:
    _note_server.reset()
    return _note_server


@pytest.fixture
def http(fake: NoteCrm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, headers={"Authorization": "Bearer key-1"}, timeout=5) as c:
        yield c


def test_auth_validation_and_error_envelope(fake: NoteCrm, http: httpx.Client) -> None:
    assert httpx.get(f"{fake.base_url}/notes").status_code == 401
    assert httpx.get(f"{fake.base_url}/open").json() == {"ok": True}
    refused = http.post("/notes", json={"text": 5})
    assert refused.status_code == 400
    assert refused.json() == {"errors": [{"status": 400, "detail": "text is required"}]}
    assert http.post("/notes", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert fake.notes == {}


def test_fault_before_does_no_work_and_after_does(fake: NoteCrm, http: httpx.Client) -> None:
    fake.inject(503, path_prefix="/notes", method="POST")
    assert http.post("/notes", json={"text": "a"}).status_code == 503
    assert fake.notes == {}
    fake.inject(500, path_prefix="/notes", method="POST", when="after")
    assert http.post("/notes", json={"text": "b"}).status_code == 500
    assert [n["text"] for n in fake.notes.values()] == ["b"]
    fake.inject(delay=1.0, path_prefix="/notes", when="after")
    with pytest.raises(httpx.ReadTimeout):
        http.post("/notes", json={"text": "c"}, timeout=0.2)
    assert [n["text"] for n in fake.notes.values()] == ["b", "c"]
    assert http.post("/notes", json={"text": "d"}).status_code == 201
    assert len(fake.requests_to("/notes", "POST")) == 4
    assert all(r.headers["authorization"] == "<redacted>" for r in fake.requests)


def test_rate_limit_counts_per_credential_and_answers_429(fake: NoteCrm, http: httpx.Client) -> None:
    fake.rate_limit.limit = 2
    fake.rate_limit.window = 30
    first = http.get("/notes")
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert http.get("/notes").headers["X-RateLimit-Remaining"] == "0"
    limited = http.get("/notes")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    fake.advance_time(31)
    assert http.get("/notes").status_code == 200
    injected_wait = 7
    fake.inject(429, retry_after=injected_wait)
    assert http.get("/notes").headers["Retry-After"] == str(injected_wait)


def test_paging_follows_absolute_next_urls(fake: NoteCrm, http: httpx.Client) -> None:
    for text in "abcde":
        http.post("/notes", json={"text": text})
    seen: list[str] = []
    url: str | None = "/notes?limit=2"
    while url:
        body = http.get(url).json()
        seen += [str(n["text"]) for n in body["data"]]
        url = body["next"]
        assert url is None or url.startswith(fake.base_url)
    assert sorted(seen) == list("abcde")
    assert http.get("/notes?cursor=%%%").status_code == 400


def test_oauth_grants_single_use_codes_rotation_and_revocation() -> None:
    clock = [1000.0]
    grants = OAuthGrants(lambda: clock[0], expires_in=60)
    code = grants.issue_code("https://app/redirect", "all", region="eu")
    assert grants.exchange_code(code, "https://app/other") is None
    issued = grants.exchange_code(code, "https://app/redirect")
    assert issued is not None and issued[1] == {"region": "eu"}
    assert grants.exchange_code(code, "https://app/redirect") is None
    pair = issued[0]
    assert grants.access_valid(pair.access_token)
    assert grants.extra_of_access(pair.access_token) == {"region": "eu"}
    clock[0] += 61
    assert not grants.access_valid(pair.access_token)
    grants.refresh_token_mode = "rotate"
    renewed = grants.refresh(pair.refresh_token)
    assert renewed is not None and renewed.refresh_token != pair.refresh_token
    assert grants.refresh(pair.refresh_token) is None
    grants.revoke(renewed.refresh_token)
    assert not grants.access_valid(renewed.access_token)
    assert grants.refresh(renewed.refresh_token) is None


def test_every_create_received_is_in_the_request_log(fake: NoteCrm, http: httpx.Client) -> None:
    """Tests count what a client sent: refused, faulted, unreadable and unauthenticated creates included."""
    http.post("/notes", json={"text": "same"})
    http.post("/notes", json={"text": "same"})
    fake.inject(503, path_prefix="/notes", method="POST")
    http.post("/notes", json={"text": "same"})
    http.post("/notes", json={"text": 5})
    http.post("/notes", content=b"{", headers={"content-type": "application/json"})
    httpx.post(f"{fake.base_url}/notes", json={"text": "same"})
    assert len(fake.requests_to("/notes", "POST")) == 6
    # nothing is merged: the same text sent twice is two notes
    assert [n["text"] for n in fake.notes.values()] == ["same", "same"]
