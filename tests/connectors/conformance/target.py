"""The adapter a connector writes so the conformance suite can run against it: one subclass per CRM.

The suite (`test_conformance.py`) drives the App Connect client's whole sequence over real HTTP through a real
connector server whose connector talks to the CRM's fake. It needs, from each connector, only what this class
declares: how to start the fake and point the server at it, how to log in as the client does, how to put
contacts in the CRM, how to read back what the CRM holds, and how to make the CRM fail. Everything the suite
asserts about the CRM is read through these methods, so a target must read the fake's *own* state (never the
server's answers).

Adding a connector: write the connector, its fake, a subclass of :class:`ConformanceTarget`, and add one
instance to `TARGETS` in `test_conformance.py`.

Contract for every method below: it is called from the test thread, while the connector server runs in another
thread; methods other than :meth:`ConformanceTarget.login` are synchronous (fakes built on
`tests/support/fake_crm.py` hold their state in memory behind a lock, so reading it is immediate).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.fake_crm import FakeCrm

#: The CRM operations the suite makes fail. A target maps each one to the request(s) its connector sends for
#: it (usually a method plus a path prefix on its fake).
#:
#: - find_contact: the search the connector runs for a phone number (the first request of GET /contact);
#: - create_contact: the request that creates a contact (POST /contact);
#: - create_call_log / get_call_log / update_call_log: the request that creates, reads or changes the CRM
#:   record of a call log (POST, GET, PATCH /callLog);
#: - create_message_log / update_message_log: the request that creates the record of a conversation's day,
#:   and the one that appends a message to it (POST /messageLog, first and later messages).
Operation = Literal[
    "find_contact",
    "create_contact",
    "create_call_log",
    "get_call_log",
    "update_call_log",
    "create_message_log",
    "update_message_log",
]
OPERATIONS: tuple[Operation, ...] = (
    "find_contact",
    "create_contact",
    "create_call_log",
    "get_call_log",
    "update_call_log",
    "create_message_log",
    "update_message_log",
)

When = Literal["before", "after"]


class FaultNotSupported(Exception):
    """Raised by :meth:`ConformanceTarget.inject` for a fault its fake cannot produce: the test is skipped."""


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """One record as the CRM (the fake) holds it.

    `id` is the CRM's id as the server passes it to the client (a string: `str(fake_id)`). `kind` is the
    contact type value for contacts (`""` when the CRM has no contact types) and `"call"`/`"message"` for logs
    when the CRM tells them apart (`""` otherwise; any other value is allowed). `text` is every human-readable
    text of the record joined (contact: its full name, "First Last" where the CRM splits it; log: subject,
    note, body, description...), so the suite can check a note or a message reached the CRM. `raw` is the
    fake's own record, for messages in assertion failures.
    """

    id: str
    kind: str = ""
    text: str = ""
    raw: Any = None


class ConformanceTarget(ABC):
    """One connector plus its fake CRM, as the conformance suite sees it.

    One instance serves a whole test session: :meth:`start` once, then for every test :meth:`reset` and
    :meth:`login`, then :meth:`stop` at the end. Subclasses set :attr:`platform` and implement the abstract
    methods; the others have defaults that suit most CRMs.
    """

    #: the connector's platform name (its `Connector.platform`)
    platform: ClassVar[str]
    #: database backends the suite runs this target on; ("sqlite",) keeps it fast, add "postgres" if cheap
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)
    #: seconds the suite waits for work a CRM is still doing after a delayed ("lost") answer to show up
    settle_seconds: ClassVar[float] = 8.0
    #: True when the CRM's search answers 404 for "nothing found" and the connector rightly reads it so: the
    #: suite then expects the placeholder (not an error) when the lookup gets a 404
    lookup_404_means_no_match: ClassVar[bool] = False
    #: stored number forms (keys of the suite's STORED_FORMS) the CRM's search cannot find, with the reason:
    #: the suite skips those cases and says why, so a limit of the CRM is visible, never silent
    unfindable_stored_forms: ClassVar[dict[str, str]] = {}
    #: CRM requests the reference connector sends per step ("lookup_hit", "lookup_miss", "create_contact",
    #: "create_call_log"), for the suite to print beside this connector's; empty: not compared
    reference_calls: ClassVar[dict[str, int]] = {}
    #: steps of `reference_calls` this connector knowingly spends more on, with the reason (printed, not failed)
    costlier_than_reference: ClassVar[dict[str, str]] = {}

    def crm_requests(self) -> int:
        """How many requests the CRM has received so far (the suite counts a step by the difference)."""
        raise FaultNotSupported("this target does not count CRM requests")

    # --- lifecycle --------------------------------------------------------------------------------------------

    @abstractmethod
    def start(self) -> None:
        """Start the fake CRM (once per session; calling it again while started does nothing)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the fake CRM (end of session)."""

    @abstractmethod
    def server_env(self) -> dict[str, str]:
        """Environment variables that point the connector at the started fake, e.g. `{"CLIO_BASE_URL": ...}`
        (`<PLATFORM>_<KEY>` becomes the connector's `config.get("<key>")`). Read once, when the server starts."""

    def server_settings(self) -> dict[str, object]:
        """`Settings` overrides for the connector server (keyword arguments of `tests.conftest.start_server`).

        Default: no embedded test CRM. The suite always adds `crm_rate_limit="off"` (so an injected 429 leaves
        no shared back-off behind) and the test defaults (`crm_read_timeout=2.0`: a delay of 3 s or more is a
        timeout).
        """
        return {"embedded_testcrm": False}

    def bind(self, server_url: str) -> None:
        """Told the started connector server's base URL (only the embedded test CRM needs it). Default: nothing."""
        return None

    @abstractmethod
    def reset(self) -> None:
        """Before every test: forget faults (and, where cheap, all CRM data). The suite uses a fresh phone
        number per test, so a fake that keeps its records between tests still works."""

    # --- auth -------------------------------------------------------------------------------------------------

    @abstractmethod
    async def login(self, http: httpx.AsyncClient) -> str:
        """Log in through the server's real routes as the client does and return the JWT.

        `http` is bound to the connector server (`base_url`). API-key CRMs: `POST /apiKeyLogin` (see
        :func:`api_key_login`); OAuth CRMs: get a code from the fake's authorize endpoint (or its grant store)
        and call `GET /oauth-callback` (see :func:`oauth_callback_login`). Assert success here: the suite
        expects a usable JWT. Each call may log in as a fresh CRM user or as the same one.
        """

    # --- CRM state ------------------------------------------------------------------------------------------

    @abstractmethod
    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        """Create a contact directly in the fake with `stored_phone` exactly as given (e.g. `(415) 555-0100`),
        of `contact_type` (a manifest `contactTypes` value; `""`: the CRM's default kind). Return its id as the
        server would give it to the client (a string)."""

    @abstractmethod
    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        """Every contact-like record the CRM holds (of any contact type) whose phone is this number in any
        format: the duplicate check. Compare digits (e.g. the last 10) or use `appconnect.connectors.phone`."""

    @abstractmethod
    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        """Every log record (call and message logs, activities, notes, communications...) the CRM holds
        against this contact, oldest first. The suite counts them, so include each record once."""

    # --- faults ---------------------------------------------------------------------------------------------

    @abstractmethod
    def inject(
        self,
        operation: Operation,
        status: int | None = None,
        *,
        delay: float | None = None,
        retry_after: float | None = None,
        when: When = "before",
        times: int = 1,
    ) -> None:
        """Make the next `times` requests of `operation` fail (see :data:`Operation`).

        `status`: the HTTP status the fake answers with its normal error envelope (a 429 carries `Retry-After:
        retry_after`); `delay`: seconds before answering; either or both. `when="before"`: the fake answers
        before doing anything (nothing is written); `when="after"`: the fake does the work, then delays and/or
        answers `status` (the answer to work that was done is lost). A delay-only "after" fault may be produced
        as a "before" delay after which the work is done: the suite waits for the work to show up either way.
        Raise :class:`FaultNotSupported` for a combination the fake cannot produce.
        """

    def clear_faults(self) -> None:
        """Forget injected faults not used up yet (the suite injects enough for every retry the server might
        make, then calls this before reading the CRM). Default: nothing, which suits a target that reads its
        fake's state in memory; a target whose reads go through the faulted HTTP API must clear them."""
        return None

    # --- optional knobs -------------------------------------------------------------------------------------

    def new_contact_submission(self, contact_type: str) -> dict[str, Any]:
        """`additionalSubmission` the client sends with `POST /contact` for this type (the manifest's
        `page.newContact.additionalFields` answers). Default: none."""
        return {}

    def call_log_submission(self) -> dict[str, Any]:
        """`additionalSubmission` of `POST /callLog` (answers to `page.callLog.additionalFields`). Default: none."""
        return {}

    def message_log_submission(self) -> dict[str, Any]:
        """`additionalSubmission` of `POST /messageLog`. Default: none."""
        return {}

    def dispositions(self, contact_id: str, contact_type: str = "") -> dict[str, Any] | None:
        """A `dispositions` body for `PUT /callDisposition` on a call logged against this contact (only asked
        when the connector implements `upsert_call_disposition`); seed what it names (a deal, a matter...) in
        the fake first. The suite then expects `successful: true` and still exactly one log. Default: None,
        i.e. the suite sends `{}` and checks only that the answer is well-formed and nothing is duplicated."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.platform})"


# ------------------------------------------------------------------------------------------------------------
# Helpers for targets
# ------------------------------------------------------------------------------------------------------------


class FakeCrmTarget(ConformanceTarget):
    """A target whose CRM is a fake built on `tests/support/fake_crm.py`: start, stop, reset and faults are the
    toolkit's. A subclass passes its fake, names the request(s) each operation sends (`fault_routes`: method
    and path prefix) and, when one operation sends several requests, how many (`requests_per_fault`)."""

    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]]

    def __init__(self, fake: FakeCrm) -> None:
        self.fake = fake
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.fake.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.fake.stop()
            self._started = False

    def reset(self) -> None:
        self.fake.reset()

    def clear_faults(self) -> None:
        self.fake.clear_faults()

    def crm_requests(self) -> int:
        return len(self.fake.snapshot(self.fake.requests))

    def requests_per_fault(self, operation: Operation, status: int | None) -> int:
        """How many of the operation's requests one injected fault must reach (default 1)."""
        return 1

    def inject(
        self,
        operation: Operation,
        status: int | None = None,
        *,
        delay: float | None = None,
        retry_after: float | None = None,
        when: When = "before",
        times: int = 1,
    ) -> None:
        for method, prefix in self.fault_routes[operation]:
            self.fake.inject(
                status,
                times=times * self.requests_per_fault(operation, status),
                path_prefix=prefix,
                method=method,
                retry_after=retry_after,
                delay=delay,
                when=when,
            )


def rc_account_headers() -> dict[str, str]:
    """A fresh RingCentral account id, as the client sends it: a new contact-cache scope per login."""
    return {"rc-account-id": f"rc-{uuid.uuid4().hex[:12]}"}


async def api_key_login(
    http: httpx.AsyncClient,
    platform: str,
    api_key: str,
    *,
    hostname: str = "",
    additional_info: dict[str, Any] | None = None,
) -> str:
    """`POST /apiKeyLogin` with the auth page's answers; returns the JWT (fails the test otherwise)."""
    body: dict[str, Any] = {"platform": platform, "apiKey": api_key, "hostname": hostname}
    if additional_info is not None:
        body["additionalInfo"] = additional_info
    response = await http.post("/apiKeyLogin", json=body, headers=rc_account_headers())
    assert response.status_code == 200, response.text
    token: str = response.json()["jwtToken"]
    return token


async def oauth_callback_login(http: httpx.AsyncClient, callback_uri: str, *, hostname: str = "temp") -> str:
    """`GET /oauth-callback` with the redirect URL the CRM sent the browser to (it holds `code`)."""
    params = {"callbackUri": callback_uri, "hostname": hostname, **_rc_account_param()}
    response = await http.get("/oauth-callback", params=params)
    assert response.status_code == 200, response.text
    token: str = response.json()["jwtToken"]
    assert token, response.text
    return token


async def authorize_redirect(authorize_url: str, params: dict[str, str]) -> str:
    """Ask a fake's OAuth authorize endpoint for a code as the browser would; return the redirect URL."""
    async with httpx.AsyncClient(timeout=10) as browser:
        response = await browser.get(authorize_url, params=params, follow_redirects=False)
    assert response.status_code in (301, 302, 303, 307), response.text
    location = response.headers["location"]
    assert parse_qs(urlsplit(location).query).get("code"), location
    return location


def _rc_account_param() -> dict[str, str]:
    return {"rcAccountId": f"rc-{uuid.uuid4().hex[:12]}"}


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def same_number_loosely(stored: str, e164: str) -> bool:
    """True when a stored phone (any format, maybe with an extension) holds this number's last 10 digits (all
    of them when shorter): deliberately loose, so a duplicate check counts too much rather than too little."""
    wanted = digits(e164)[-10:]
    return bool(wanted) and wanted in digits(stored)
