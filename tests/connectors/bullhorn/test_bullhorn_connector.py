"""The Bullhorn connector driven against FakeBullhorn: what it sends and what Bullhorn ends up holding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fake_bullhorn import FakeBullhorn

from appconnect.connectors.bullhorn import BullhornConnector
from appconnect.connectors.sdk import (
    PLACEHOLDER_CONTACT_ID,
    CallLogCreate,
    CallLogRef,
    CallLogUpdate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmAnswerError,
    CrmCall,
    DispositionUpdate,
    LoginRequest,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

COMPOSED = "<b>Agent notes</b><br>Asked about the shift<br><br><b>Call details</b><ul><li><b>Summary</b>: Call</li></ul>"
START = "2026-03-12T14:35:20.000Z"
START_MS = 1773326120000


@dataclass
class Env:
    fake: FakeBullhorn
    connector: BullhornConnector
    call: CrmCall


async def _login(
    fake: FakeBullhorn, connector: BullhornConnector, http: CrmHttpClient, username: str
) -> CrmCall:
    tokens = fake.issue_tokens(username)
    auth = f"Bearer {tokens.access_token}"
    request = LoginRequest(
        auth_header=auth, hostname="", platform="bullhorn", http=http, query={"username": username}
    )
    result = await connector.get_user_info(request)
    assert result.successful and result.user is not None, result
    user = UserView(
        id=result.user.id,
        platform="bullhorn",
        hostname="auth-east.bullhornstaffing.com",
        timezone_offset=result.user.timezone_offset,
        platform_additional_info=result.user.platform_additional_info,
    )
    return CrmCall(user=user, auth_header=auth, http=http)


@pytest.fixture
async def env(fake_bullhorn: FakeBullhorn) -> AsyncIterator[Env]:
    connector = BullhornConnector(ConnectorConfig(fake_bullhorn.connector_config()))
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url="", auth_header="")
        call = await _login(fake_bullhorn, connector, http, "agent.east")
        yield Env(fake_bullhorn, connector, call)
    finally:
        await client.aclose()


def _record(session_id: str = "s-1", duration: int = 487) -> CallRecord:
    contact = CallParty(phone_number="+14155550142", name="Maya Patel")
    agent = CallParty(phone_number="+14155550101", name="Jordan Lee")
    return CallRecord(
        session_id=session_id,
        direction="Inbound",
        start_time=START,
        duration=duration,
        from_party=contact,
        to_party=agent,
    )


def _log(contact_id: str, **extra: object) -> CallLogCreate:
    return CallLogCreate(
        contact=ContactRef(id=contact_id, phone_number="+14155550142", type="Candidate", name="Maya Patel"),
        call=_record(),
        composed_log_details=COMPOSED,
        additional_submission=dict(extra),
    )


# --- login and tenants ----------------------------------------------------------------------------------------


async def test_login_names_the_user_by_the_session_and_the_corporation(env: Env) -> None:
    """The stored id is the session owner's CorporateUser id inside its corporation (ids repeat across them)."""
    assert env.call.user.id == "501~1001-bullhorn"
    assert env.call.user.crm_user_id == "501"
    info = env.call.user.platform_additional_info
    assert info["corporationId"] == 1001
    assert info["restUrl"] == "https://rest91.bullhornstaffing.com/rest-services/corp1a/"
    assert env.call.user.timezone_offset == "-300"  # Bullhorn's 0 minutes from US Eastern


async def test_the_data_centre_comes_from_login_info_not_from_the_client(env: Env) -> None:
    """A west user's OAuth host is the west one, whatever hostname the client sent."""
    env.fake.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    env.fake.add_user("agent.west", corporation=2002, user_id=501, first="Wes", last="West")
    host = await env.connector.resolve_oauth_hostname(
        env.call.http, "app.bullhornstaffing.com", {"username": "agent.west"}
    )
    assert host == "auth-west.bullhornstaffing.com"
    info = env.connector.oauth_info(host)
    assert info.access_token_uri == f"{env.fake.base_url}/auth-west/oauth/token"
    assert info.client_secret_in_body is True


async def test_an_unknown_data_centre_host_never_gets_the_client_secret(env: Env) -> None:
    for host in ("app.bullhornstaffing.com", "auth-east.evil.example", ""):
        info = env.connector.oauth_info(host)
        assert info.fail_message and info.access_token_uri == "" and info.client_secret is None
    assert await env.connector.resolve_oauth_hostname(env.call.http, "x", {}) == ""


async def test_a_server_without_the_application_looks_nothing_up(env: Env) -> None:
    unconfigured = BullhornConnector(ConnectorConfig({"origin": env.fake.base_url}))
    before = len(env.fake.requests)
    host = await unconfigured.resolve_oauth_hostname(env.call.http, "x", {"username": "agent.east"})
    assert host == "" and len(env.fake.requests) == before
    assert unconfigured.oauth_info("auth-east.bullhornstaffing.com").fail_message == (
        "Bullhorn is not set up on this server (no client id)."
    )


async def test_a_second_corporation_with_the_same_ids_is_another_user(env: Env) -> None:
    env.fake.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    env.fake.add_user("agent.west", corporation=2002, user_id=501, first="Wes", last="West")
    west = await _login(env.fake, env.connector, env.call.http, "agent.west")
    assert west.user.id == "501~2002-bullhorn" != env.call.user.id
    mine = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    theirs = env.fake.add_person("Candidate", "Other Person", "(415) 555-0142", corporation=2002)
    assert mine["id"] == theirs["id"]  # each corporation numbers its own records
    found = await env.connector.find_contact(west, ContactLookup("+14155550142"))
    assert [c.name for c in found.contacts] == ["Other Person"]


# --- the REST session -----------------------------------------------------------------------------------------


async def test_an_ended_rest_session_is_opened_again_once(env: Env) -> None:
    env.fake.add_person("Lead", "Maya Patel", "+1 415 555 0142")
    logins = env.fake.rest_logins
    env.fake.sessions.clear()  # Bullhorn ended the session (idle too long)
    found = await env.connector.find_contact(env.call, ContactLookup("+14155550142"))
    assert [c.type for c in found.contacts] == ["Lead"]
    assert env.fake.rest_logins == logins + 1  # one new session for the lookup's parallel searches


async def test_the_rest_call_carries_the_session_token_not_the_oauth_token(env: Env) -> None:
    await env.connector.find_contact(env.call, ContactLookup("+14155550142"))
    searches = env.fake.requests_to("/rest91/rest-services/corp1a/search/")
    assert len(searches) == 3
    assert all(r.headers.get("bhresttoken") and r.auth_scheme is None for r in searches)


# --- contacts -------------------------------------------------------------------------------------------------


async def test_lookup_finds_each_kind_and_rechecks_the_number(env: Env) -> None:
    env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    env.fake.add_person("ClientContact", "Sam Client", "415.555.0142")
    env.fake.add_person("Lead", "Lee Lead", "+1 415 555 0142")
    env.fake.add_person("Lead", "Longer Number", "+1 415 555 01429")
    env.fake.add_person("Candidate", "Gone", "(415) 555-0142", status="Archived")
    found = await env.connector.find_contact(env.call, ContactLookup("+14155550142"))
    assert sorted((c.type, c.name) for c in found.contacts) == [
        ("Candidate", "Maya Patel"),
        ("Contact", "Sam Client"),
        ("Lead", "Lee Lead"),
    ]
    assert found.contacts[0].additional_info == {
        "noteActions": [{"const": a, "title": a} for a in ("Call", "SMS", "Left Message")]
    }


async def test_a_miss_offers_the_placeholder_with_the_comment_actions(env: Env) -> None:
    found = await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    [entry] = found.contacts
    assert entry.id == PLACEHOLDER_CONTACT_ID and entry.default_contact_type == "Lead"


async def test_placeholder_contacts_are_created_with_put(env: Env) -> None:
    lead = await env.connector.create_contact(
        env.call, NewContact("+14155550150", "Ada King Lovelace", "Lead")
    )
    contact = await env.connector.create_contact(
        env.call, NewContact("+14155550151", "Sam Client", "Contact")
    )
    again = await env.connector.create_contact(env.call, NewContact("+14155550152", "Kim Client", "Contact"))
    assert lead is not None and contact is not None and again is not None
    people = {str(r["id"]): (e, r) for e, r in env.fake.people()}
    entity, record = people[lead.contact.id]
    assert entity == "Lead" and record["firstName"] == "Ada" and record["lastName"] == "King Lovelace"
    assert people[contact.contact.id][0] == "ClientContact"
    company = people[contact.contact.id][1]["clientCorporation"]["id"]
    assert people[again.contact.id][1]["clientCorporation"]["id"] == company  # one placeholder company
    puts = env.fake.requests_to("/rest91/rest-services/corp1a/entity/", method="PUT")
    assert len(puts) == 4  # lead, placeholder company, two client contacts
    assert await env.connector.create_contact(env.call, NewContact("+14155550153", "X", "")) is None


# --- notes ----------------------------------------------------------------------------------------------------


async def test_a_call_is_a_note_with_epoch_ms_and_whole_minutes(env: Env) -> None:
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    result = await env.connector.create_call_log(env.call, _log(str(person["id"])))
    [note] = env.fake.notes()
    assert result.log_id == str(note["id"])
    assert note["dateAdded"] == START_MS
    assert note["minutesSpent"] == 9  # 487 s: nine started minutes, an integer
    assert note["personReference"] == {"id": person["id"]}
    assert note["commentingPerson"] == {"id": 501}
    assert note["externalID"] == "rc-call-s-1"
    assert note["action"] == "pending note"


async def test_the_note_action_comes_from_the_form_else_the_company_setting(env: Env) -> None:
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    env.call.user.user_settings = {"bullhornInboundCallNoteAction": {"value": "Inbound Call"}}
    await env.connector.create_call_log(env.call, _log(str(person["id"])))
    await env.connector.create_call_log(env.call, _log(str(person["id"]), noteActions="Left Message"))
    assert [n["action"] for n in env.fake.notes()] == ["Inbound Call", "Left Message"]


async def test_a_call_is_updated_with_post_and_read_back(env: Env) -> None:
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    created = await env.connector.create_call_log(env.call, _log(str(person["id"])))
    assert created.log_id is not None
    ref = CallLogRef(created.log_id)
    await env.connector.update_call_log(
        env.call, CallLogUpdate(ref, composed_log_details=COMPOSED.replace("shift", "rota"), duration=61)
    )
    [note] = env.fake.notes()
    assert note["minutesSpent"] == 2 and "rota" in note["comments"] and "[rc-call-s-1]" in note["comments"]
    assert env.fake.requests_to(f"/rest91/rest-services/corp1a/entity/Note/{created.log_id}", method="POST")
    fetched = await env.connector.get_call_log(env.call, ref)
    assert fetched.info.note == "Asked about the rota"
    assert fetched.info.subject == "Call"
    assert fetched.info.contact_name == "Maya Patel"
    assert "rc-call" not in (fetched.info.full_body or "")
    await env.connector.upsert_call_disposition(env.call, DispositionUpdate(ref, {"noteActions": "SMS"}))
    assert env.fake.notes()[0]["action"] == "SMS"


async def test_a_lost_call_note_is_found_by_its_external_id(env: Env) -> None:
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    log = _log(str(person["id"]))
    assert await env.connector.find_call_log(env.call, log) is None
    created = await env.connector.create_call_log(env.call, log)
    assert await env.connector.find_call_log(env.call, log) == created.log_id


async def test_an_sms_conversation_is_one_note_appended_once_per_message(env: Env) -> None:
    person = env.fake.add_person("Lead", "Maya Patel", "(415) 555-0142")
    contact = ContactRef(id=str(person["id"]), phone_number="+14155550142", type="Lead", name="Maya Patel")
    first = Message(id="m1", subject="Hello", creation_time=START)
    created = await env.connector.create_message_log(
        env.call, MessageLogCreate(contact, first, "conv-1", "conv-1-day")
    )
    assert created.log_id is not None
    second = Message(id="m2", subject="Still there?", direction="Outbound", creation_time=START)
    update = MessageLogUpdate(contact, second, created.log_id, "conv-1-day")
    await env.connector.update_message_log(env.call, update)
    await env.connector.update_message_log(env.call, update)  # an append sent again after a lost answer
    [note] = env.fake.notes()
    assert note["comments"].count("Still there?") == 1
    assert "Conversation(2 messages)" in note["comments"]
    assert note["dateAdded"] == START_MS and "minutesSpent" not in note


async def test_a_log_against_no_person_is_refused_without_a_request(env: Env) -> None:
    before = len(env.fake.requests)
    result = await env.connector.create_call_log(env.call, _log("not-a-number"))
    assert result.log_id is None and len(env.fake.requests) == before


async def test_the_user_list_is_the_corporations_users_page_by_page(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appconnect.connectors.bullhorn.connector as module

    monkeypatch.setattr(module, "USER_PAGE", 2)
    for n in range(3):
        env.fake.add_user(f"user{n}", corporation=1001, user_id=600 + n, first=f"U{n}", last="Last")
    env.fake.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    env.fake.add_user("elsewhere", corporation=2002, user_id=700, first="No", last="Body")
    users = await env.connector.get_user_list(env.call)
    assert [(u.id, u.name) for u in users] == [
        ("501", "Ada Agent"),
        ("600", "U0 Last"),
        ("601", "U1 Last"),
        ("602", "U2 Last"),
    ]
    assert users[0].email == "agent.east@example.com"
    # two full pages, then the empty third that ends the list
    assert len(env.fake.requests_to("/rest91/rest-services/corp1a/query/CorporateUser")) == 3


# --- name search ----------------------------------------------------------------------------------------------


def _search_queries(fake: FakeBullhorn) -> list[str]:
    return [
        str((r.json or {}).get("query"))
        for r in fake.requests_to("/rest91/rest-services/corp1a/search/", method="POST")
    ]


async def test_name_search_finds_each_kind_by_whole_first_or_last_name(env: Env) -> None:
    env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    env.fake.add_person("ClientContact", "Maya Lin", "415.555.0143")
    env.fake.add_person("Lead", "Raj Patel", "+1 415 555 0144")
    env.fake.add_person("Candidate", "Gone Patel", "(415) 555-0145", status="Archived")
    env.fake.add_person("Lead", "Other Person", "+1 415 555 0146")
    found = await env.connector.find_contact_with_name(env.call, "  Maya   Patel ")
    assert found.successful
    assert sorted((c.type, c.name) for c in found.contacts) == [
        ("Candidate", "Maya Patel"),
        ("Contact", "Maya Lin"),  # first name
        ("Lead", "Raj Patel"),  # last name
    ]
    assert found.contacts[0].additional_info == {
        "noteActions": [{"const": a, "title": a} for a in ("Call", "SMS", "Left Message")]
    }
    assert sorted(_search_queries(env.fake)) == sorted(
        f'(name:"Maya Patel" OR firstName:"Maya" OR lastName:"Patel") AND isDeleted:false NOT status:"{s}"'
        for s in ("Archive", "Archived", "Converted")
    )


@pytest.mark.parametrize(
    "hostile",
    [
        'Maya") OR (isDeleted:false',
        "Maya OR status:Active",
        'Zed \\" OR name:*',
        "Zed* (x:y)",
    ],
)
async def test_a_name_with_query_syntax_is_only_text(env: Env, hostile: str) -> None:
    """Quotes, colons, parentheses, `OR` and `*` in the user's text stay inside escaped phrases: the strict
    fake parses every query as the three alternatives, and nobody is found whose name lacks those words."""
    env.fake.add_person("Candidate", "Other Person", "(415) 555-0142")
    env.fake.add_person("Lead", "Nobody Here", "(415) 555-0143", status="Active")
    found = await env.connector.find_contact_with_name(env.call, hostile)
    assert found.successful and found.contacts == []
    queries = _search_queries(env.fake)
    assert len(queries) == 3
    for query in queries:
        assert query.startswith('(name:"') and query.count(" OR firstName:") == 1


async def test_a_name_quoted_inside_is_still_found(env: Env) -> None:
    env.fake.add_person("Candidate", 'Maya "May" Patel', "(415) 555-0142")
    found = await env.connector.find_contact_with_name(env.call, 'Maya "May" Patel')
    assert [c.name for c in found.contacts] == ['Maya "May" Patel']
    assert (
        '(name:"Maya \\"May\\" Patel" OR firstName:"Maya" OR lastName:"Patel")'
        in _search_queries(env.fake)[0]
    )


async def test_a_name_without_letters_or_digits_searches_nothing(env: Env) -> None:
    before = len(env.fake.requests)
    for text in ("", "   ", "*", '" ) ( :'):
        found = await env.connector.find_contact_with_name(env.call, text)
        assert found.successful and found.contacts == []
    assert len(env.fake.requests) == before


# --- status picklists -----------------------------------------------------------------------------------------


def _meta_requests(fake: FakeBullhorn) -> list[str]:
    return [r.path for r in fake.requests_to("/rest91/rest-services/corp1a/meta/")]


async def test_a_miss_offers_each_types_statuses_read_once_per_corporation(env: Env) -> None:
    env.fake.corporations[1001].statuses["Lead"] = ["Cold", "Warm"]
    found = await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    [entry] = found.contacts
    assert entry.additional_info is not None
    assert entry.additional_info["Lead"] == {
        "status": [{"const": "Cold", "title": "Cold"}, {"const": "Warm", "title": "Warm"}]
    }
    assert [o["const"] for o in entry.additional_info["Candidate"]["status"]] == [
        "New Lead",
        "Active",
        "Placed",
        "Archived",
    ]
    assert [o["const"] for o in entry.additional_info["Contact"]["status"]][-1] == "Archive"
    assert entry.additional_info["noteActions"][0] == {"const": "Call", "title": "Call"}
    assert sorted(_meta_requests(env.fake)) == [
        "/rest91/rest-services/corp1a/meta/Candidate",
        "/rest91/rest-services/corp1a/meta/ClientContact",
        "/rest91/rest-services/corp1a/meta/Lead",
    ]
    await env.connector.find_contact(env.call, ContactLookup("+14155550198"))
    await env.connector.create_contact(
        env.call, NewContact("+14155550198", "Ada King", "Lead", additional_submission={"status": "Warm"})
    )
    assert len(_meta_requests(env.fake)) == 3  # kept for the hour


async def test_statuses_are_read_again_once_the_hour_is_over(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appconnect.connectors.bullhorn.connector as module

    monkeypatch.setattr(module, "COMMENT_ACTIONS_TTL", 0.0)
    await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    env.fake.corporations[1001].statuses["Lead"] = ["Fresh"]
    found = await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    assert found.contacts[0].additional_info is not None
    assert found.contacts[0].additional_info["Lead"] == {"status": [{"const": "Fresh", "title": "Fresh"}]}
    assert len(_meta_requests(env.fake)) == 6


async def test_only_a_status_bullhorn_offers_is_sent(env: Env) -> None:
    offered = await env.connector.create_contact(
        env.call,
        NewContact("+14155550150", "Ada King", "Candidate", additional_submission={"status": "Active"}),
    )
    made_up = await env.connector.create_contact(
        env.call, NewContact("+14155550151", "Bo Fake", "Lead", additional_submission={"status": "VIP; DROP"})
    )
    assert offered is not None and made_up is not None
    people = {str(r["id"]): r for _, r in env.fake.people()}
    assert people[offered.contact.id]["status"] == "Active"
    assert "status" not in people[made_up.contact.id]
    assert offered.return_message is not None and offered.return_message.message_type == "success"
    assert made_up.return_message is not None and made_up.return_message.message_type == "warning"


# --- copy to contact comments ---------------------------------------------------------------------------------


async def test_copy_to_contact_comments_sets_the_persons_comments(env: Env) -> None:
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    log = _log(str(person["id"]), copyToContactComments=True)
    log.note = "Prefers nights"
    result = await env.connector.create_call_log(env.call, log)
    assert result.log_id is not None
    [(entity, stored)] = env.fake.people()
    assert entity == "Candidate" and stored["comments"] == "Prefers nights"
    unchecked = _log(str(person["id"]), copyToContactComments=False)
    unchecked.note = "Not copied"
    await env.connector.create_call_log(env.call, unchecked)
    assert env.fake.people()[0][1]["comments"] == "Prefers nights"
    assert len(env.fake.notes()) == 2


async def test_a_refused_copy_leaves_the_note_logged_with_a_warning(env: Env) -> None:
    person = env.fake.add_person("Lead", "Maya Patel", "(415) 555-0142")
    log = _log(str(person["id"]), copyToContactComments=True)  # the form says Candidate: no such candidate
    log.note = "Prefers nights"
    result = await env.connector.create_call_log(env.call, log)
    assert result.log_id is not None and len(env.fake.notes()) == 1
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert "comments" not in env.fake.people()[0][1]


async def test_copy_on_an_update_finds_the_persons_type_by_its_id(env: Env) -> None:
    """The update knows only the person's id: the one entity with a live record of that id is written, the
    note overwriting the person's comments as on the create."""
    person = env.fake.add_person("Lead", "Maya Patel", "(415) 555-0142", comments="Old remark")
    log = _log(str(person["id"]))
    log.contact.type = "Lead"
    created = await env.connector.create_call_log(env.call, log)
    assert created.log_id is not None
    ref = CallLogRef(created.log_id, contact_id=str(person["id"]))
    updated = await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            ref,
            composed_log_details=COMPOSED,
            note="Call back on Friday",
            additional_submission={"copyToContactComments": True},
        ),
    )
    assert updated.return_message is not None and updated.return_message.message_type == "success"
    [(entity, stored)] = env.fake.people()
    assert entity == "Lead" and stored["comments"] == "Call back on Friday"
    assert [(e, i) for _, e, i, _ in env.fake.updates] == [
        ("Note", int(created.log_id)),
        ("Lead", int(person["id"])),
    ]
    # unchecked: the person's comments stay
    await env.connector.update_call_log(
        env.call, CallLogUpdate(ref, composed_log_details=COMPOSED, note="Not copied")
    )
    assert env.fake.people()[0][1]["comments"] == "Call back on Friday"


async def test_copy_on_an_update_reads_the_person_from_the_note_when_the_row_has_none(env: Env) -> None:
    person = env.fake.add_person("ClientContact", "Sam Client", "(415) 555-0143")
    log = _log(str(person["id"]))
    log.contact.type = "Contact"
    created = await env.connector.create_call_log(env.call, log)
    assert created.log_id is not None
    ref = CallLogRef(created.log_id)
    fetched = await env.connector.get_call_log(env.call, ref)
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            ref,
            composed_log_details=COMPOSED,
            note="Wants nights",
            additional_submission={"copyToContactComments": "true"},
            existing_call_log_details=fetched.info.full_log_response,
        ),
    )
    assert [(e, r.get("comments")) for e, r in env.fake.people()] == [("ClientContact", "Wants nights")]


async def test_copy_on_an_update_to_a_deleted_person_writes_nothing_and_warns(env: Env) -> None:
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    created = await env.connector.create_call_log(env.call, _log(str(person["id"])))
    assert created.log_id is not None
    person_record = env.fake.corporations[1001].records["Candidate"][int(person["id"])]
    person_record["isDeleted"] = True
    updated = await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            CallLogRef(created.log_id, contact_id=str(person["id"])),
            composed_log_details=COMPOSED,
            note="Prefers nights",
            additional_submission={"copyToContactComments": True},
        ),
    )
    assert updated.return_message is not None and updated.return_message.message_type == "warning"
    assert "comments" not in person_record
    assert [e for _, e, _, _ in env.fake.updates] == ["Note"]  # the log itself is updated


# --- bullhornData account data ------------------------------------------------------------------------------------


async def test_bullhorn_data_has_the_references_shape(env: Env) -> None:
    env.fake.corporations[1001].statuses["Lead"] = ["Cold", "Warm"]
    data = await env.connector.account_data(env.call, "bullhornData")
    assert set(data) == {"commentActionList", "leadStatuses", "candidateStatuses", "contactStatuses"}
    assert data["commentActionList"][0] == {"const": "Call", "title": "Call"}
    assert data["leadStatuses"] == [{"const": "Cold", "title": "Cold"}, {"const": "Warm", "title": "Warm"}]
    assert data["candidateStatuses"][-1] == {"const": "Archived", "title": "Archived"}
    assert data["contactStatuses"][-1] == {"const": "Archive", "title": "Archive"}


async def test_bullhorn_data_refresh_reads_bullhorn_again(env: Env) -> None:
    await env.connector.account_data(env.call, "bullhornData")
    await env.connector.account_data(env.call, "bullhornData")
    assert len(_meta_requests(env.fake)) == 3  # kept for the hour
    env.fake.corporations[1001].statuses["Candidate"] = ["Fresh"]
    data = await env.connector.account_data(env.call, "bullhornData", refresh=True)
    assert data["candidateStatuses"] == [{"const": "Fresh", "title": "Fresh"}]
    assert len(_meta_requests(env.fake)) == 6
    # the placeholder's picklists follow the refreshed ones
    found = await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    assert found.contacts[0].additional_info is not None
    assert found.contacts[0].additional_info["Candidate"] == {
        "status": [{"const": "Fresh", "title": "Fresh"}]
    }


async def test_a_forced_lookup_reads_the_picklists_again(env: Env) -> None:
    """The client's `isForceRefreshAccountData` on a lookup refreshes `bullhornData` as the reference's does."""
    await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    env.fake.corporations[1001].statuses["Lead"] = ["Fresh"]
    kept = await env.connector.find_contact(env.call, ContactLookup("+14155550199"))
    assert kept.contacts[0].additional_info is not None
    assert kept.contacts[0].additional_info["Lead"]["status"][0]["const"] == "New"
    forced = await env.connector.find_contact(env.call, ContactLookup("+14155550199", force_refresh=True))
    assert forced.contacts[0].additional_info is not None
    assert forced.contacts[0].additional_info["Lead"] == {"status": [{"const": "Fresh", "title": "Fresh"}]}
    assert len(_meta_requests(env.fake)) == 6


async def test_an_unknown_account_data_key_is_refused(env: Env) -> None:
    with pytest.raises(CrmAnswerError):  # the server refuses unknown keys before; the hook never guesses
        await env.connector.account_data(env.call, "activityTypes")
    assert _meta_requests(env.fake) == []


# --- server-side logging's updates in the API user's session ----------------------------------------------------


async def test_server_side_updates_and_dispositions_use_the_api_user(env: Env) -> None:
    env.fake.add_user(
        "api.logger", corporation=1001, user_id=590, first="Api", last="Logger", password="pw-1"
    )
    settings = {"apiUsername": "api.logger", "apiPassword": "pw-1"}
    person = env.fake.add_person("Candidate", "Maya Patel", "(415) 555-0142")
    log = _log(str(person["id"]))
    log.from_server_side_logging, log.server_logging = True, settings
    created = await env.connector.create_call_log(env.call, log)
    assert created.log_id is not None
    ref = CallLogRef(created.log_id)
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            ref,
            composed_log_details=COMPOSED,
            duration=61,
            from_server_side_logging=True,
            server_logging=settings,
        ),
    )
    await env.connector.upsert_call_disposition(
        env.call,
        DispositionUpdate(
            ref, {"noteActions": "SMS"}, from_server_side_logging=True, server_logging=settings
        ),
    )
    # the user's own edit afterwards stays the user's
    await env.connector.upsert_call_disposition(env.call, DispositionUpdate(ref, {"noteActions": "Call"}))
    note_id = int(created.log_id)
    assert [(e, i, who) for _, e, i, who in env.fake.updates] == [
        ("Note", note_id, 590),
        ("Note", note_id, 590),
        ("Note", note_id, 501),
    ]
    assert env.fake.password_logins == 1
    # without settings for this corporation, server-side logging's update goes through the user's session
    await env.connector.update_call_log(
        env.call, CallLogUpdate(ref, composed_log_details=COMPOSED, from_server_side_logging=True)
    )
    assert env.fake.updates[-1][3] == 501
