"""The connector SDK: the typed interfaces a CRM integration implements.

A connector is a subclass of :class:`Connector`. It overrides only the interfaces its CRM supports; the server
owns everything generic (sessions, token refresh, persistence, idempotency, error mapping). Every CRM call a
connector makes goes through :class:`CrmHttp`, which adds the auth header and timeouts and raises
:class:`CrmHttpError` on a non-2xx answer, so a connector only writes the happy path.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

# re-exported: a connector imports everything it needs from this module
from appconnect.outbound.types import CrmAnswerError as CrmAnswerError
from appconnect.outbound.types import CrmHttp as CrmHttp
from appconnect.outbound.types import CrmHttpError as CrmHttpError
from appconnect.outbound.types import CrmResponse as CrmResponse
from appconnect.outbound.types import LimitRule as LimitRule
from appconnect.outbound.types import LimitScope as LimitScope
from appconnect.outbound.types import RateLimit as RateLimit

AuthType = Literal["oauth", "apiKey"]
MessageType = Literal["success", "warning", "error", "danger", "info"]
LogFormat = Literal["text/plain", "text/html", "text/markdown"]

JsonDict = dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Values exchanged with the client and the CRM
# ---------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReturnMessage:
    """The toast the client shows: `{message, messageType, ttl, details?}`."""

    message: str
    message_type: MessageType = "success"
    ttl: int = 3000
    details: list[JsonDict] | None = None

    def to_wire(self) -> JsonDict:
        wire: JsonDict = {"message": self.message, "messageType": self.message_type, "ttl": self.ttl}
        if self.details is not None:
            wire["details"] = self.details
        return wire


@dataclass(slots=True)
class Contact:
    """A CRM contact as the client's contact list shows it."""

    id: str
    name: str
    phone: str | None = None
    type: str | None = None
    title: str | None = None
    company: str | None = None
    organization: str | None = None
    email: str | None = None
    created_date: str | None = None
    most_recent_activity_date: str | None = None
    additional_info: JsonDict | None = None
    is_new_contact: bool = False
    default_contact_type: str | None = None

    def to_wire(self) -> JsonDict:
        wire: JsonDict = {"id": self.id, "name": self.name}
        optional = {
            "phone": self.phone,
            "type": self.type,
            "title": self.title,
            "company": self.company,
            "organization": self.organization,
            "email": self.email,
            "createdDate": self.created_date,
            "mostRecentActivityDate": self.most_recent_activity_date,
        }
        wire.update({k: v for k, v in optional.items() if v is not None})
        wire["additionalInfo"] = self.additional_info
        if self.is_new_contact:
            wire["isNewContact"] = True
        if self.default_contact_type is not None:
            wire["defaultContactType"] = self.default_contact_type
        return wire


PLACEHOLDER_CONTACT_ID = "createNewContact"
TENANT_SEPARATOR = "~"


def stored_user_id(platform: str, crm_user_id: object, tenant: object = None) -> str:
    """The id a user is stored under: `<crmUserId>-<platform>`, or `<crmUserId>~<tenant>-<platform>`.

    Give `tenant` (a region, an instance, a database) whenever the CRM's user ids are unique only inside one
    tenant: two companies' users with the same CRM id must never share a stored user (their credentials, their
    sessions). The server also refuses to let a login from another account take over an existing user's
    sessions, but only distinct ids keep both companies working.
    """
    crm_id = str(crm_user_id).replace(TENANT_SEPARATOR, "_")
    if tenant is None or str(tenant) == "":
        return f"{crm_id}-{platform}"
    return f"{crm_id}{TENANT_SEPARATOR}{str(tenant).replace(TENANT_SEPARATOR, '_')}-{platform}"


def placeholder_contact(default_contact_type: str | None = None) -> Contact:
    """The "Create new contact..." entry the client offers when a number has no match."""
    return Contact(
        id=PLACEHOLDER_CONTACT_ID,
        name="Create new contact...",
        is_new_contact=True,
        default_contact_type=default_contact_type or None,
    )


@dataclass(slots=True)
class UserView:
    """What a connector may know about the logged-in user (never the raw tokens)."""

    id: str
    platform: str
    hostname: str
    timezone_name: str | None = None
    timezone_offset: str | None = None
    platform_additional_info: JsonDict = field(default_factory=dict)
    user_settings: JsonDict = field(default_factory=dict)

    @property
    def crm_user_id(self) -> str:
        """The CRM's own user id: the stored id is `<crmUserId>[~<tenant>]-<platform>` (see `stored_user_id`)."""
        suffix = f"-{self.platform}"
        bare = self.id[: -len(suffix)] if self.id.endswith(suffix) else self.id
        return bare.partition(TENANT_SEPARATOR)[0]

    def setting(self, key: str, default: Any = None) -> Any:
        entry = self.user_settings.get(key)
        if isinstance(entry, dict) and "value" in entry:
            return entry["value"]
        return default


# ---------------------------------------------------------------------------------------------------------------
# The outbound HTTP seam
# ---------------------------------------------------------------------------------------------------------------


class AccountData(Protocol):
    """Data of the user's CRM account (activity types, categories) kept in the server's storage, shared by
    every process and every user of the account, so it is fetched from the CRM once per `max_age`, not per log.

    `get` answers what is stored when it is younger than `max_age` seconds, else calls `fetch` and stores its
    answer; when `fetch` fails and something is stored, that is answered instead (stale beats failing a log).
    The second value says whether `fetch` ran just now. `fetch` must answer JSON-serialisable data.
    """

    async def get(
        self, key: str, fetch: Callable[[], Awaitable[Any]], *, max_age: float
    ) -> tuple[Any, bool]: ...


@dataclass(slots=True)
class CrmCall:
    """Everything an interface needs to talk to the CRM for one user."""

    user: UserView
    auth_header: str
    http: CrmHttp
    #: the account's stored data (None where the server offers no storage: a connector then keeps its own)
    account_data: AccountData | None = None


# ---------------------------------------------------------------------------------------------------------------
# Interface inputs and outputs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class OAuthInfo:
    """Where and as whom the server exchanges and refreshes OAuth tokens."""

    client_id: str
    client_secret: str | None
    access_token_uri: str
    redirect_uri: str
    authorization_uri: str | None = None
    scopes: str | None = None
    hostname: str | None = None
    revoke_uri: str | None = None
    fail_message: str | None = None
    #: send `client_id` and `client_secret` as form fields (RFC 6749 2.3.1 `client_secret_post`) instead of an
    #: `Authorization: Basic` header, for a token endpoint that takes only parameters (Bullhorn)
    client_secret_in_body: bool = False


@dataclass(slots=True)
class LoginRequest:
    """Input of `get_user_info`: the credential just obtained and what the client sent with it."""

    auth_header: str
    hostname: str
    platform: str
    http: CrmHttp
    api_key: str | None = None
    additional_info: JsonDict = field(default_factory=dict)
    token_response: JsonDict = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PlatformUser:
    """Who logged in, as the CRM knows them. `id` is stored as the user's key (`<crmUserId>-<platform>`)."""

    id: str
    name: str
    timezone_name: str | None = None
    timezone_offset: str | None = None
    platform_additional_info: JsonDict = field(default_factory=dict)
    overriding_hostname: str | None = None
    overriding_api_key: str | None = None
    #: the CRM's own id of the company/account this user belongs to, as the CRM reported it. The server keys
    #: every stored log and cache row by it (never by client-supplied headers); None: the user is their own
    #: account.
    account_id: str | None = None


@dataclass(slots=True)
class UserInfoResult:
    successful: bool
    user: PlatformUser | None = None
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class ContactLookup:
    phone_number: str
    overriding_format: str = ""
    is_extension: bool = False
    force_refresh: bool = False


@dataclass(slots=True)
class ContactMatches:
    """Result of a lookup. `contacts` may end with the placeholder entry; an empty list means no match."""

    successful: bool = True
    contacts: list[Contact] = field(default_factory=list)
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class NewContact:
    """The placeholder contact the user named and typed in the log form."""

    phone_number: str
    name: str
    contact_type: str
    additional_submission: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class CreatedContact:
    contact: Contact
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class ContactRef:
    """The contact a log is written against, as the client chose it."""

    id: str
    phone_number: str
    type: str = ""
    name: str = ""


@dataclass(slots=True)
class CallParty:
    phone_number: str | None = None
    extension_number: str | None = None
    name: str | None = None


@dataclass(slots=True)
class CallRecord:
    """The RingCentral call-log record the client sends as `logInfo`."""

    session_id: str
    id: str | None = None
    telephony_session_id: str | None = None
    direction: str = "Outbound"
    start_time: str | None = None
    duration: int | str | None = None
    result: str | None = None
    from_party: CallParty = field(default_factory=CallParty)
    to_party: CallParty = field(default_factory=CallParty)
    recording_link: str | None = None
    custom_subject: str | None = None
    legs: list[JsonDict] = field(default_factory=list)
    raw: JsonDict = field(default_factory=dict)

    @property
    def contact_party(self) -> CallParty:
        return self.from_party if self.direction == "Inbound" else self.to_party


@dataclass(slots=True, frozen=True)
class RingSense:
    """What RingCentral's RingSense made of a recorded call (the reference's `ringSense*` fields)."""

    transcript: str | None = None
    summary: str | None = None
    ai_score: str | None = None
    bulleted_summary: str | None = None
    link: str | None = None


@dataclass(slots=True)
class CallLogCreate:
    contact: ContactRef
    call: CallRecord
    note: str = ""
    subject: str | None = None
    composed_log_details: str = ""
    additional_submission: JsonDict = field(default_factory=dict)
    ai_note: str | None = None
    transcript: str | None = None
    voicemail_link: str | None = None
    voicemail_message_id: str | None = None
    recording_download_link: str | None = None
    ring_sense: RingSense | None = None
    #: the CRM user the call belongs to when it is not the logged-in user (server-side logging, the admin's
    #: user mapping); a connector whose CRM takes an owner or assignee logs it under this user
    owner: CrmUser | None = None
    #: logged by RingCentral's server-side call logging, not by a user's browser
    from_server_side_logging: bool = False
    #: server-side logging only: the fields the account's admin saved for it (the manifest's
    #: `serverSideLogging.additionalFields`, e.g. a CRM API user), empty when none apply to this CRM account
    server_logging: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class LogResult:
    """`log_id` None means the CRM did not take the log."""

    log_id: str | None
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class CallLogRef:
    log_id: str
    contact_id: str | None = None
    telephony_session_id: str | None = None


@dataclass(slots=True)
class CallLogInfo:
    subject: str | None = None
    note: str | None = None
    full_body: str | None = None
    contact_name: str | None = None
    dispositions: JsonDict | None = None
    full_log_response: Any = None

    def to_wire(self) -> JsonDict:
        wire: JsonDict = {
            "subject": self.subject,
            "note": self.note,
            "fullBody": self.full_body,
            "fullLogResponse": self.full_log_response,
        }
        if self.contact_name is not None:
            wire["contactName"] = self.contact_name
        if self.dispositions is not None:
            wire["dispositions"] = self.dispositions
        return wire


@dataclass(slots=True)
class CallLogFetched:
    info: CallLogInfo
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class CallLogUpdate:
    log: CallLogRef
    composed_log_details: str = ""
    subject: str | None = None
    note: str | None = None
    start_time: str | None = None
    duration: int | str | None = None
    result: str | None = None
    recording_link: str | None = None
    additional_submission: JsonDict = field(default_factory=dict)
    existing_call_log_details: Any = None
    recording_download_link: str | None = None
    ring_sense: RingSense | None = None
    #: sent by RingCentral's server-side call logging (`PATCH /callLog` with its user agent)
    from_server_side_logging: bool = False
    #: server-side logging only: the admin's fields for it, as in :class:`CallLogCreate`
    server_logging: JsonDict = field(default_factory=dict)
    #: the AI note and transcript as they came with the update (a connector that files them apart from the
    #: composed log, e.g. in columns of their own, writes them again)
    ai_note: str | None = None
    transcript: str | None = None


@dataclass(slots=True)
class CallLogUpdated:
    updated_note: str | None = None
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class DispositionUpdate:
    log: CallLogRef
    dispositions: JsonDict = field(default_factory=dict)
    #: sent by RingCentral's server-side call logging, with the admin's fields for it (see CallLogCreate)
    from_server_side_logging: bool = False
    server_logging: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class Message:
    """One RingCentral message (SMS, MMS, fax, voicemail) of a conversation."""

    id: str
    type: str = "SMS"
    direction: str = "Inbound"
    subject: str = ""
    creation_time: str | None = None
    from_party: CallParty = field(default_factory=CallParty)
    raw: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class SharedConversation:
    """A shared-inbox conversation (a call queue's or a colleague's number), logged as one activity.

    The server composes the whole log (`subject`, `body` in the connector's `log_format`: participants, the
    agents who answered, the owning queue, every message and note); a connector writes it as is on create and
    replaces the activity's text with `body` on update (the conversation is re-sent whole each time).
    `started_at` is the conversation's creation time (ISO 8601, UTC), the activity's date.
    """

    subject: str
    body: str
    started_at: str | None = None


@dataclass(slots=True, frozen=True)
class MediaFile:
    """A RingCentral attachment of a message (an MMS image, a fax document) a connector may copy into the CRM."""

    uri: str
    content_type: str


class MediaFetcher(Protocol):
    """Downloads a :class:`MediaFile` from RingCentral as the user (the flow holds the user's RingCentral
    token; a connector never sees it). Raises :class:`MediaUnavailable` when it cannot."""

    async def fetch(self, media: MediaFile) -> bytes: ...


class MediaUnavailable(Exception):
    """The attachment could not be downloaded: a host not allowed, too large, no token, RingCentral failed."""


@dataclass(slots=True)
class MessageLogCreate:
    contact: ContactRef
    message: Message
    conversation_id: str
    conversation_log_id: str
    additional_submission: JsonDict = field(default_factory=dict)
    recording_link: str | None = None
    fax_doc_link: str | None = None
    image_link: str | None = None
    #: a group SMS: the names of the other people in the conversation (besides `contact` and the user), each
    #: as the account's contact cache or the client knows it, else their number; a connector lists them
    #: among the log's participants
    correspondents: list[str] = field(default_factory=list)
    #: set for a shared SMS: write `shared.subject` and `shared.body` instead of composing from `message`
    shared: SharedConversation | None = None
    #: the message's image or fax document, and how to download it (None: the client sent no RingCentral
    #: token, so only the links can be written)
    image: MediaFile | None = None
    fax: MediaFile | None = None
    media: MediaFetcher | None = None


@dataclass(slots=True)
class MessageLogUpdate:
    contact: ContactRef
    message: Message
    log_id: str
    conversation_log_id: str
    additional_submission: JsonDict = field(default_factory=dict)
    image_link: str | None = None
    #: set for a shared SMS: replace the activity's text with `shared.body` (keeping the connector's markers)
    shared: SharedConversation | None = None
    image: MediaFile | None = None
    media: MediaFetcher | None = None


@dataclass(slots=True)
class CrmUser:
    """One user of the CRM account, for the admin's mapping of RingCentral users to CRM users."""

    id: str
    name: str
    email: str | None = None

    def to_wire(self) -> JsonDict:
        wire: JsonDict = {"id": self.id, "name": self.name}
        if self.email is not None:
            wire["email"] = self.email
        return wire


@dataclass(slots=True)
class ManagedAuthOption:
    """One choice of a managed login field (a dealer, a CRM user): `value` is stored, `label` only shown."""

    value: str
    label: str

    def to_wire(self) -> JsonDict:
        return {"value": self.value, "label": self.label}


@dataclass(slots=True)
class ManagedAuthOptionsRequest:
    """Input of `get_managed_auth_options`: asked by an admin before any CRM user of the account has logged in,
    so there is no user session; `http` sends no user credential (a connector adds its own server-held one).
    `account_values` are the account-scoped answers so far (e.g. the dealer id), transient until saved."""

    field_const: str
    http: CrmHttp
    account_values: JsonDict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# The connector base class
# ---------------------------------------------------------------------------------------------------------------


class InterfaceNotImplemented(Exception):
    """The connector does not offer this interface."""


logger = logging.getLogger(__name__)

#: what a connector's own code raises when a CRM answer is not what the CRM's API documents: JSON that is not
#: JSON (`ValueError`), a key or an item missing (`LookupError`), a value of another type (`TypeError`,
#: `AttributeError`), a number out of range (`ArithmeticError`), bytes that are not text (`UnicodeError`)
_ANSWER_ERRORS: tuple[type[BaseException], ...] = (
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    ArithmeticError,
    UnicodeError,
)
#: ids the server stores (users, call and message logs) fit these columns (store/tables.py)
_STORED_ID_CHARS = 255

AsyncMethod = Callable[..., Awaitable[Any]]


def _answered_writes(holder: object) -> int:
    """How many writes the session's HTTP client has had answered so far (0 for a client that does not count)."""
    count = getattr(getattr(holder, "http", None), "answered_writes", 0)
    return count if isinstance(count, int) else 0


#: what `str()` makes of a JSON value that is no id (null, a boolean, a fraction, an object, a list)
_NOT_AN_ID = re.compile(
    r"None|True|False|null|nan|-?inf|-?\d*\.\d+(e[+-]?\d+)?|-?\d+(\.\d*)?e[+-]?\d+|[{\[].*", re.S
)


def _unusable_id(value: object) -> bool:
    """True for an id no CRM gives: not text, empty, too long to store, or the text of a JSON value that is
    no id (a connector's `str(answer["id"])` of a `null`, `true`, `1.5`, `{}` the CRM sent instead)."""
    return (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > _STORED_ID_CHARS
        or _NOT_AN_ID.fullmatch(value) is not None
    )


def _result_problem(result: object, platform: str) -> str | None:
    """What is wrong with a result naming a record by an id the CRM cannot have meant (it would be stored,
    shown to the user and used for later updates as if it were the record's); None when nothing is."""
    if isinstance(result, LogResult) and result.log_id is not None and _unusable_id(result.log_id):
        return "log id"
    if isinstance(result, str) and _unusable_id(result):  # find_call_log / find_message_log
        return "log id"
    if isinstance(result, UserInfoResult) and result.user is not None:
        user_id = result.user.id
        crm_user_id = user_id.removesuffix(f"-{platform}").partition(TENANT_SEPARATOR)[0]
        if _unusable_id(user_id) or _unusable_id(crm_user_id):
            return "user id"
    if isinstance(result, CreatedContact) and _unusable_id(result.contact.id):
        return "contact id"
    if isinstance(result, ContactMatches) and any(
        _unusable_id(c.id) for c in result.contacts if not c.is_new_contact
    ):
        return "contact id"
    return None


def _guarded(method: AsyncMethod, interface: str) -> AsyncMethod:
    """The interface as the server calls it: an answer the connector could not read is a CrmAnswerError."""

    @functools.wraps(method)
    async def guarded(self: Connector, first: object, *args: Any, **kwargs: Any) -> Any:
        writes_before = _answered_writes(first)
        cause: BaseException | None = None
        try:
            result = await method(self, first, *args, **kwargs)
            problem = _result_problem(result, self.platform)
        except CrmAnswerError as exc:
            # refused before the connector's code could read it (the outbound client's JSON read: nested too
            # deep), or by the connector itself: whether a write of this call was answered is known only here
            problem, cause = exc.reason, exc
        except (CrmHttpError, InterfaceNotImplemented):
            raise
        except _ANSWER_ERRORS as exc:
            problem, cause = type(exc).__name__, exc
        else:
            if problem is None:
                return result
        unknown = _answered_writes(first) > writes_before or (
            isinstance(cause, CrmAnswerError) and cause.outcome_unknown
        )
        # what failed, never the exception's text (it may quote the CRM's answer: names, numbers)
        logger.warning(
            "%s.%s could not read the CRM's answer (%s)%s",
            self.platform,
            interface,
            problem,
            "; a write had been answered, its outcome is unknown" if unknown else "",
        )
        raise CrmAnswerError(problem, outcome_unknown=unknown) from cause

    return guarded


class Connector:
    """Base class of every CRM connector.

    Class attributes describe the platform; methods are the interfaces. Override what the CRM supports; the
    registry reports the overridden ones in `/implementedInterfaces`. `manifest_path` (a `manifest.json`
    beside the connector module) holds the platform's manifest entry.

    Every interface a subclass overrides is wrapped (`__init_subclass__`) so that a CRM answer its code could
    not read (an HTML page where JSON was due, a list where an object was, a missing key) reaches the server as
    :class:`CrmAnswerError`, mapped like any CRM failure: a connector writes the happy path only.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in GUARDED_METHODS:
            method = cls.__dict__.get(name)
            # only what this class defines: an inherited interface is guarded where it was defined
            if inspect.iscoroutinefunction(method):
                setattr(cls, name, _guarded(method, name))

    platform: ClassVar[str]
    auth_type: ClassVar[AuthType] = "apiKey"
    log_format: ClassVar[str] = "text/plain"
    manifest_path: ClassVar[Path | None] = None
    #: the rate limits the CRM documents, each with its scope (token, user, company) and the paths it covers.
    #: None documented: none declared, and the server holds no call back in advance (it still waits out a 429's
    #: `Retry-After`). `APPCONNECT_CRM_RATE_LIMIT` adds a fixed limit of the operator's own.
    rate_limits: ClassVar[tuple[LimitRule, ...]] = ()
    #: True when :meth:`update_message_log` skips a message the activity already holds (found by a per-message
    #: marker it writes), so sending the same append again cannot duplicate it. Only then does the server
    #: re-send an append whose outcome is unknown; otherwise it reports that message as needing attention.
    idempotent_message_append: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        self.config = config or ConnectorConfig()

    # --- platform description -------------------------------------------------------------------------------

    def manifest_entry(self) -> JsonDict:
        """This platform's `platforms.<name>` manifest entry."""
        if self.manifest_path is None:
            return {"name": self.platform, "displayName": self.platform, "auth": {"type": self.auth_type}}
        entry: JsonDict = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return entry

    def contact_types(self) -> list[str]:
        """The `value`s of the manifest's `contactTypes`; empty when the platform declares none."""
        return contact_type_values(self.manifest_entry())

    def base_url(self, user: UserView) -> str:
        """Base URL for relative CRM paths: config `base_url` (tests point it at a fake), else https://<hostname>."""
        if self.config.get("base_url"):
            return self.config.get("base_url").rstrip("/")
        host = user.hostname
        if host.startswith(("http://", "https://")):
            return host.rstrip("/")
        return f"https://{host}" if host else ""

    def rate_limit_key(self, user: UserView) -> str:
        """The CRM company (account) the user belongs to: by default the CRM host (one company per host)."""
        return user.hostname.lower()

    def limit_scope_key(self, user: UserView, scope: LimitScope) -> str:
        """Whose calls a rule of `scope` counts together: this session's token (one stored user holds one token
        or key), the CRM user, or the company of :meth:`rate_limit_key`. Never the token itself."""
        if scope == "token":
            return f"token:{user.id}"
        if scope == "user":
            return f"user:{user.hostname.lower()}|{user.crm_user_id}"
        return f"company:{self.rate_limit_key(user)}"

    # --- auth ----------------------------------------------------------------------------------------------

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        """OAuth endpoints and client credentials (OAuth connectors only)."""
        raise InterfaceNotImplemented("getOauthInfo")

    async def resolve_oauth_hostname(self, http: CrmHttp, hostname: str, query: dict[str, str]) -> str:
        """The hostname the OAuth code exchange and every later refresh go to, before `oauth_info` is asked.

        For a CRM whose token endpoint depends on the user (a data centre the CRM names for a username), look
        it up here; the answer is stored as the user's hostname. Default: the hostname the client sent.
        Return "" when it cannot be found: `oauth_info("")` then answers with its `fail_message`.
        """
        return hostname

    def basic_auth(self, api_key: str) -> str:
        """The base64 credential for `Authorization: Basic` (API-key connectors). Default: `<apiKey>:`."""
        import base64

        return base64.b64encode(f"{api_key}:".encode()).decode()

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        raise InterfaceNotImplemented("getUserInfo")

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        """Revoke the CRM credential if the CRM supports it. The server clears the stored tokens."""
        raise InterfaceNotImplemented("unAuthorize")

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        raise InterfaceNotImplemented("findContact")

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        raise InterfaceNotImplemented("findContactWithName")

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        raise InterfaceNotImplemented("createContact")

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        raise InterfaceNotImplemented("createCallLog")

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        raise InterfaceNotImplemented("updateCallLog")

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        raise InterfaceNotImplemented("getCallLog")

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        raise InterfaceNotImplemented("upsertCallDisposition")

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The id of the CRM log an earlier `create_call_log` of this same call may have written, or None.

        Asked before creating again when an earlier create's outcome is unknown (sent, no answer). Find it by a
        marker the create wrote (session id in an external id or in the note). Without this interface the
        server never re-creates such a log: it reports it as needing attention instead of risking a duplicate.
        """
        raise InterfaceNotImplemented("findCallLog")

    # --- account ---------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The CRM account's active users (id, name, email when the CRM gives it), for the admin's user mapping."""
        raise InterfaceNotImplemented("getUserList")

    async def get_managed_auth_options(self, request: ManagedAuthOptionsRequest) -> list[ManagedAuthOption]:
        """The complete list of choices for one managed login field (the reference's `getManagedAuthOptions`),
        e.g. the users of the dealer the admin entered; the client searches it, so no paging."""
        raise InterfaceNotImplemented("getManagedAuthOptions")

    #: the keys :meth:`account_data` answers (`GET /accountData?keys=`), as the manifest's `accountDataKey`s
    account_data_keys: ClassVar[tuple[str, ...]] = ()

    async def account_data(self, call: CrmCall, key: str, *, refresh: bool = False) -> Any:
        """One of :attr:`account_data_keys` of the user's CRM account (say, the active activity types an admin
        setting picks from), kept in `call.account_data`; `refresh` fetches it from the CRM again."""
        raise InterfaceNotImplemented("getAccountData")

    async def setting_options(self, call: CrmCall) -> dict[str, list[JsonDict]]:
        """The options of the manifest's settings marked `dynamicOptions`, read from the CRM (`{id, name}`
        each, by setting id): the server puts them into the settings it answers, so the user picks among
        what the CRM holds (its categories, its activity types) rather than typing an id."""
        raise InterfaceNotImplemented("settingOptions")

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        raise InterfaceNotImplemented("createMessageLog")

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append `update.message` to the activity `update.log_id` (and keep its message count right).

        An append may be sent again after an earlier one got no answer. A connector that writes a marker of
        each message (its RingCentral id) into the activity and skips a message whose marker is already there
        declares :attr:`idempotent_message_append`; without it such a message is never appended twice.
        """
        raise InterfaceNotImplemented("updateMessageLog")

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        """The id of the activity an earlier `create_message_log` of this conversation log may have written.

        Same contract as :meth:`find_call_log`, keyed by `log.conversation_log_id`.
        """
        raise InterfaceNotImplemented("findMessageLog")

    async def refresh_user_info(self, call: CrmCall) -> UserRefreshed:
        """Optional (`POST /user/refreshInfo`): bring what the connector keeps of the user's CRM session up to
        date (re-check a server-held token, re-read CRM user details it stores) and say how it went. A CRM
        failure may be raised as CrmHttpError (the server maps it as for any interface). Without this the
        server answers success without calling the CRM, as the reference does."""
        raise InterfaceNotImplemented("refreshUserInfo")

    async def get_license_status(self, call: CrmCall) -> LicenseStatus:
        """Optional: whether the user's CRM licence lets them use App Connect (`GET /licenseStatus`).

        A connector without the notion does not override this; the server then answers the reference's
        default (valid, "Basic") without calling the CRM.
        """
        return LicenseStatus(True, "Basic")


@dataclass(frozen=True, slots=True)
class LicenseStatus:
    """A user's CRM licence as the client shows it: valid or not, a short status and a description."""

    is_license_valid: bool
    license_status: str
    license_status_description: str = ""

    def to_wire(self) -> JsonDict:
        return {
            "isLicenseValid": self.is_license_valid,
            "licenseStatus": self.license_status,
            "licenseStatusDescription": self.license_status_description,
        }


@dataclass(slots=True)
class UserRefreshed:
    """What `refresh_user_info` answers: `{successful, returnMessage?}` as the client shows it."""

    successful: bool
    return_message: ReturnMessage | None = None


@dataclass(slots=True)
class ConnectorConfig:
    """Deployment settings a connector reads (OAuth client credentials, base-URL overrides)."""

    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)


#: interface name on the wire -> method name on :class:`Connector`
INTERFACE_METHODS: dict[str, str] = {
    "getUserInfo": "get_user_info",
    "createCallLog": "create_call_log",
    "updateCallLog": "update_call_log",
    "getCallLog": "get_call_log",
    "createMessageLog": "create_message_log",
    "updateMessageLog": "update_message_log",
    "createContact": "create_contact",
    "findContact": "find_contact",
    "unAuthorize": "unauthorize",
    "upsertCallDisposition": "upsert_call_disposition",
    "findContactWithName": "find_contact_with_name",
    "getUserList": "get_user_list",
    "getManagedAuthOptions": "get_managed_auth_options",
    "refreshUserInfo": "refresh_user_info",
}

#: interfaces the contract names that no connector offers here (appointments: out of scope, crm-connectors.md);
#: `/implementedInterfaces` answers them false so the client hides them
UNOFFERED_INTERFACES: tuple[str, ...] = (
    "listAppointments",
    "createAppointment",
    "updateAppointment",
    "refreshAppointment",
    "confirmAppointment",
    "cancelAppointment",
)


#: the interfaces that read CRM answers: each is guarded against answers of an unexpected shape
GUARDED_METHODS: frozenset[str] = frozenset(
    {
        *INTERFACE_METHODS.values(),
        "find_call_log",
        "find_message_log",
        "setting_options",
        "account_data",
    }
)


def contact_type_values(manifest_entry: JsonDict) -> list[str]:
    """The `value` of each `contactTypes` entry of a platform's manifest entry."""
    return [str(t["value"]) for t in manifest_entry.get("contactTypes", [])]


def implements(connector: Connector, method: str) -> bool:
    """True when the connector overrides `method` of the base class."""
    return getattr(type(connector), method, None) is not getattr(Connector, method, None)
