"""The VinSolutions connector driven against FakeVinSolutions over loopback HTTP: what it sends, what the CRM holds.

Phone matching: VinSolutions' contact search compares the stored digits with the digits asked for, so the
connector asks for the national number (`4155550100`) and the E.164 digits (`14155550100`): a number stored as
`(415) 555-0100`, `415.555.0100`, `+1 415 555 0100` or bare digits is found; one stored with an extension is
not (its digits are unknown), unless the user's overridingFormat renders it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogRef,
    CallLogUpdate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmCall,
    CrmHttpError,
    CrmUser,
    LoginRequest,
    ManagedAuthOptionsRequest,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    SharedConversation,
    UserView,
)
from appconnect.connectors.vinsolutions import VinSolutionsConnector
from appconnect.connectors.vinsolutions.connector import TokenCache
from appconnect.outbound.client import CrmHttpClient, build_transport_client
from tests.connectors.vinsolutions.fake_vinsolutions import (
    DEALER_ID,
    LEADS_V3,
    OTHER_DEALER_ID,
    USER_ID,
    V1,
    FakeVinSolutions,
)

PHONE = "+14155550100"


@dataclass
class Env:
    fake: FakeVinSolutions
    connector: VinSolutionsConnector
    http: CrmHttpClient

    def call(self, dealer_id: int = DEALER_ID, user_id: int = USER_ID) -> CrmCall:
        user = UserView(
            id=f"{user_id}~{dealer_id}-vinsolutions",
            platform="vinsolutions",
            hostname="vinsolutions.app.coxautoinc.com",
            timezone_offset="0",
            platform_additional_info={
                "dealerId": dealer_id,
                "crmUserId": user_id,
                "userName": "Morgan Rivera",
            },
        )
        return CrmCall(user, "", self.http)


@pytest.fixture
async def env(fake_vinsolutions: FakeVinSolutions) -> AsyncIterator[Env]:
    settings = {k.removeprefix("VINSOLUTIONS_").lower(): v for k, v in fake_vinsolutions.env().items()}
    connector = VinSolutionsConnector(ConnectorConfig(settings))
    transport = build_transport_client(connect_timeout=2, read_timeout=2)
    http = CrmHttpClient(transport, base_url=connector.base_url(_probe()), auth_header="")
    yield Env(fake_vinsolutions, connector, http)
    await transport.aclose()


def _probe() -> UserView:
    return UserView(id="", platform="vinsolutions", hostname="")


async def found_ids(
    env: Env, phone: str, dealer_id: int = DEALER_ID, overriding_format: str = ""
) -> list[str]:
    matches = await env.connector.find_contact(
        env.call(dealer_id), ContactLookup(phone, overriding_format=overriding_format)
    )
    assert matches.successful
    assert matches.contacts[-1].is_new_contact
    return [c.id for c in matches.contacts if not c.is_new_contact]


def call_record(session_id: str = "s-1", duration: int = 95) -> CallRecord:
    return CallRecord(
        session_id=session_id,
        direction="Inbound",
        start_time="2026-03-12T14:35:20.000Z",
        duration=duration,
        result="Accepted",
        from_party=CallParty(phone_number=PHONE),
        to_party=CallParty(phone_number="+14155550101"),
    )


def sms(message_id: str, text: str, at: str = "14:35:20") -> Message:
    return Message(id=message_id, subject=text, direction="Inbound", creation_time=f"2026-03-12T{at}.000Z")


# --- login and managed auth -----------------------------------------------------------------------------------


async def test_login_names_the_dealer_in_the_stored_id_and_the_account(env: Env) -> None:
    result = await env.connector.get_user_info(
        LoginRequest(
            auth_header="",
            hostname="vinsolutions.app.coxautoinc.com",
            platform="vinsolutions",
            http=env.http,
            additional_info={"dealerId": str(DEALER_ID), "crmUserId": str(USER_ID)},
        )
    )
    assert result.successful and result.user is not None
    assert result.user.id == f"{USER_ID}~{DEALER_ID}-vinsolutions"
    assert result.user.account_id == str(DEALER_ID)
    assert result.user.name == "Morgan Rivera"
    assert result.user.platform_additional_info["dealerName"] == "Bayview Motors"
    [token] = env.fake.requests_to("/connect/token")
    assert token.form == {
        "grant_type": "client_credentials",
        "client_id": "fake-vinsolutions-client",
        "client_secret": "<redacted>",
        "scope": "PublicAPI",
    }


@pytest.mark.parametrize(
    "answers",
    [{"dealerId": "", "crmUserId": "13001"}, {"dealerId": "23002", "crmUserId": "99999"}, {"dealerId": "x"}],
)
async def test_login_without_a_known_dealer_user_is_refused(env: Env, answers: dict[str, str]) -> None:
    result = await env.connector.get_user_info(
        LoginRequest(
            auth_header="", hostname="", platform="vinsolutions", http=env.http, additional_info=answers
        )
    )
    assert not result.successful and result.return_message is not None


async def test_login_to_a_dealer_that_did_not_enable_the_partner_is_refused(env: Env) -> None:
    env.fake.dealers[OTHER_DEALER_ID]["enabled"] = False
    result = await env.connector.get_user_info(
        LoginRequest(
            auth_header="",
            hostname="",
            platform="vinsolutions",
            http=env.http,
            additional_info={"dealerId": str(OTHER_DEALER_ID), "crmUserId": str(USER_ID)},
        )
    )
    assert not result.successful
    assert result.return_message is not None and "Partner Enablement" in str(result.return_message.details)


async def test_managed_auth_lists_the_dealers_and_the_users_of_the_dealer_given(env: Env) -> None:
    env.fake.add_user(DEALER_ID, 13002, "Ana", "Lopez")
    dealers = await env.connector.get_managed_auth_options(ManagedAuthOptionsRequest("dealerId", env.http))
    assert [o.to_wire() for o in dealers] == [
        {"value": str(DEALER_ID), "label": f"Bayview Motors #{DEALER_ID}"},
        {"value": str(OTHER_DEALER_ID), "label": f"Hillside Auto #{OTHER_DEALER_ID}"},
    ]
    users = await env.connector.get_managed_auth_options(
        ManagedAuthOptionsRequest("crmUserId", env.http, {"dealerId": str(DEALER_ID)})
    )
    assert [o.to_wire() for o in users] == [
        {"value": "13001", "label": "Morgan Rivera + morgan@example.test"},
        {"value": "13002", "label": "Ana Lopez"},
    ]
    none = await env.connector.get_managed_auth_options(ManagedAuthOptionsRequest("crmUserId", env.http, {}))
    assert none == []


# --- the token ------------------------------------------------------------------------------------------------


async def test_the_token_is_fetched_once_for_many_concurrent_requests(env: Env) -> None:
    env.fake.inject(delay=0.3, path_prefix="/connect/token")
    await asyncio.gather(*(found_ids(env, PHONE) for _ in range(5)))
    assert env.fake.token_requests() == 1
    await found_ids(env, PHONE, OTHER_DEALER_ID)  # one partner token serves every dealer
    assert env.fake.token_requests() == 1


async def test_a_refused_token_fails_that_request_and_the_next_gets_a_new_token(env: Env) -> None:
    await found_ids(env, PHONE)
    env.fake.revoke_tokens()
    with pytest.raises(CrmHttpError) as refused:
        await found_ids(env, PHONE)
    assert refused.value.status == 401
    await found_ids(env, PHONE)
    assert env.fake.token_requests() == 2


async def test_a_token_is_renewed_before_it_expires() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    fetched: list[str] = []

    async def fetch() -> tuple[str, float]:
        fetched.append(f"t{len(fetched)}")
        return fetched[-1], 3600.0

    assert await cache.get("leads", fetch) == "t0"
    now[0] += 3600 - 301
    assert await cache.get("leads", fetch) == "t0"
    now[0] += 2  # inside the last five minutes of its life: renewed while still valid
    assert await cache.get("leads", fetch) == "t1"
    cache.drop("leads", "t0")  # an older token's refusal does not drop the newer one
    assert await cache.get("leads", fetch) == "t1"
    assert fetched == ["t0", "t1"]


async def test_a_short_lived_token_is_renewed_at_half_its_life() -> None:
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    lifetimes = iter([60.0, 60.0])

    async def fetch() -> tuple[str, float]:
        return f"t{now[0]}", next(lifetimes)

    assert await cache.get("calls", fetch) == "t0.0"
    now[0] = 29.0
    assert await cache.get("calls", fetch) == "t0.0"
    now[0] = 31.0
    assert await cache.get("calls", fetch) == "t31.0"


# --- contacts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored", ["(415) 555-0100", "415.555.0100", "+1 415 555 0100", "4155550100", "14155550100"]
)
async def test_a_stored_spelling_is_found(env: Env, stored: str) -> None:
    contact = env.fake.add_contact("Avery", "Chen", [stored])
    assert await found_ids(env, PHONE) == [str(contact["ContactId"])]


async def test_a_number_with_an_extension_is_found_only_through_the_overriding_format(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["415-555-0100 x12"])
    assert await found_ids(env, PHONE) == []
    assert await found_ids(env, PHONE, overriding_format="***-***-**** x12") == [str(contact["ContactId"])]


async def test_contacts_of_another_dealer_with_the_same_ids_are_never_found(env: Env) -> None:
    mine = env.fake.add_contact("Avery", "Chen", ["4155550100"], DEALER_ID)
    theirs = env.fake.add_contact("Riley", "Stone", ["4155550199"], OTHER_DEALER_ID)
    assert mine["ContactId"] == theirs["ContactId"]  # ids are numbered inside each dealer
    assert await found_ids(env, "+14155550199", DEALER_ID) == []
    assert await found_ids(env, PHONE, OTHER_DEALER_ID) == []
    queried = {r.query["dealerId"] for r in env.fake.requests_to("/gateway/v1/contact")}
    assert queried == {str(DEALER_ID), str(OTHER_DEALER_ID)}


async def test_a_match_offers_its_leads_in_the_log_form(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    lead = env.fake.add_lead(DEALER_ID, contact["ContactId"])
    matches = await env.connector.find_contact(env.call(), ContactLookup(PHONE))
    [found, placeholder] = matches.contacts
    assert placeholder.is_new_contact
    assert (found.name, found.phone, found.type) == ("Avery Chen", "4155550100", "contact")
    assert found.additional_info == {
        "leads": [{"const": lead["leadId"], "title": f"Lead #{lead['leadId']} (ACTIVE_NEW_LEAD) - Website"}]
    }
    [leads] = env.fake.requests_to("/leads", "GET")
    assert leads.headers["accept"] == LEADS_V3
    assert leads.query == {
        "dealerId": str(DEALER_ID),
        "userId": str(USER_ID),
        "contactId": str(contact["ContactId"]),
        "limit": "100",
    }


async def test_a_placeholder_contact_is_made_at_the_users_dealer(env: Env) -> None:
    created = await env.connector.create_contact(env.call(), NewContact(PHONE, "Dorothy Vaughan", "contact"))
    assert created is not None
    [contact] = env.fake.contacts_of(DEALER_ID)
    assert created.contact.id == str(contact["ContactId"])
    assert contact["ContactInformation"] == {
        "FirstName": "Dorothy",
        "LastName": "Vaughan",
        "Phones": [{"PhoneType": "Cell", "Number": "4155550100"}],
    }
    assert env.fake.contacts_of(OTHER_DEALER_ID) == []


async def test_a_one_word_name_gets_the_reference_last_name(env: Env) -> None:
    await env.connector.create_contact(env.call(), NewContact(PHONE, "Dorothy", "contact"))
    [contact] = env.fake.contacts_of(DEALER_ID)
    assert (contact["ContactInformation"]["FirstName"], contact["ContactInformation"]["LastName"]) == (
        "Dorothy",
        "Customer",
    )


# --- call logs ------------------------------------------------------------------------------------------------


async def test_a_call_is_one_call_detail_and_a_second_create_finds_it(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    lead = env.fake.add_lead(DEALER_ID, contact["ContactId"])
    log = CallLogCreate(
        contact=ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen"),
        call=call_record(),
        composed_log_details="- Note: Asked about the sedan\n- Duration: 1 minute",
        additional_submission={"leads": lead["leadId"]},
    )
    first = await env.connector.create_call_log(env.call(), log)
    [detail] = env.fake.call_details_of(DEALER_ID, contact["ContactId"])
    assert first.log_id == str(detail["callDetailId"])
    assert detail["vinProperties"] == {
        "dealerId": DEALER_ID,
        "userId": USER_ID,
        "contactId": contact["ContactId"],
        "leadId": lead["leadId"],
    }
    assert (detail["accountId"], detail["providerName"], detail["providerReferenceId"]) == (
        str(DEALER_ID),
        "RingCentral",
        "s-1",
    )
    assert (detail["callRingStartUTC"], detail["callEndUTC"]) == (
        "2026-03-12T14:35:20Z",
        "2026-03-12T14:36:55Z",
    )
    assert (detail["callDirection"], detail["callDurationSeconds"], detail["callResult"]) == (
        "INBOUND",
        95,
        "SPOKE",
    )
    assert env.fake.requests_to("/calldetails", "POST")[0].headers["content-type"] == V1

    again = await env.connector.find_call_log(env.call(), log)
    assert again == first.log_id
    assert len(env.fake.call_details_of(DEALER_ID, contact["ContactId"])) == 1


async def test_a_call_log_is_read_and_updated(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    log = CallLogCreate(
        contact=ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen"),
        call=call_record("s-2"),
        composed_log_details="- Note: Asked about the sedan\n- Duration: 1 minute",
    )
    made = await env.connector.create_call_log(env.call(), log)
    assert made.log_id is not None
    fetched = await env.connector.get_call_log(env.call(), CallLogRef(made.log_id))
    assert (fetched.info.subject, fetched.info.note, fetched.info.contact_name) == (
        "Inbound call",
        "Asked about the sedan",
        "Avery Chen",
    )
    await env.connector.update_call_log(
        env.call(),
        CallLogUpdate(
            CallLogRef(made.log_id), composed_log_details="- Note: Test drive Friday", duration=120
        ),
    )
    [detail] = env.fake.call_details_of(DEALER_ID, contact["ContactId"])
    assert (detail["transcriptFull"], detail["callDurationSeconds"]) == ("- Note: Test drive Friday", 120)
    with pytest.raises(CrmHttpError) as elsewhere:  # another dealer's session cannot read it
        await env.connector.get_call_log(env.call(OTHER_DEALER_ID), CallLogRef(made.log_id))
    assert elsewhere.value.status == 404


# --- message logs ---------------------------------------------------------------------------------------------


def message_log(contact: dict[str, object], message: Message, **extra: object) -> MessageLogCreate:
    return MessageLogCreate(
        contact=ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen"),
        message=message,
        conversation_id="conv-1",
        conversation_log_id="conv-1-2026-03-12",
        **extra,  # type: ignore[arg-type]
    )


async def test_an_sms_conversation_is_a_block_in_a_new_lead_and_appends_once(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    made = await env.connector.create_message_log(
        env.call(), message_log(contact, sms("m1", "Is it available?"))
    )
    [lead] = env.fake.leads_of(DEALER_ID, int(contact["ContactId"]))
    assert made.log_id == str(lead["leadId"])
    assert "[rc-sms-conv-1-2026-03-12]" in lead["notes"] and "Is it available? [rc-msg-m1]" in lead["notes"]
    assert "Conversation (1 message):" in lead["notes"]
    [created] = env.fake.requests_to("/leads", "POST")
    assert created.headers["content-type"] == LEADS_V3

    update = MessageLogUpdate(
        contact=ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen"),
        message=sms("m2", "Can I come at 5?", "14:40:00"),
        log_id=made.log_id or "",
        conversation_log_id="conv-1-2026-03-12",
    )
    await env.connector.update_message_log(env.call(), update)
    await env.connector.update_message_log(env.call(), update)
    [lead] = env.fake.leads_of(DEALER_ID, int(contact["ContactId"]))
    assert lead["notes"].count("[rc-msg-m2]") == 1
    assert "Conversation (2 messages):" in lead["notes"]
    assert lead["notes"].index("[rc-msg-m2]") < lead["notes"].index("--- Created via RingCentral App Connect")
    found = await env.connector.find_message_log(
        env.call(), message_log(contact, sms("m1", "Is it available?"))
    )
    assert found == made.log_id


async def test_logging_into_a_chosen_lead_keeps_the_dealers_notes(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    lead = env.fake.add_lead(DEALER_ID, contact["ContactId"], notes="Wants a blue sedan")
    env.fake.leads[lead["leadId"]]["isHot"] = True
    made = await env.connector.create_message_log(
        env.call(),
        message_log(
            contact, sms("m1", "Is it available?"), additional_submission={"leads": str(lead["leadId"])}
        ),
    )
    assert made.log_id == str(lead["leadId"])
    [kept] = env.fake.leads_of(DEALER_ID, int(contact["ContactId"]))
    assert kept["notes"].startswith("Wants a blue sedan\n\n[rc-sms-")
    assert kept["isHot"] is True  # the reference's update body resets it; the lead's own value is sent
    assert env.fake.requests_to("/leads", "POST") == []


async def test_a_shared_conversation_rewrites_only_its_block(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    lead = env.fake.add_lead(DEALER_ID, contact["ContactId"], notes="Dealer note")
    chosen = {"leads": lead["leadId"]}
    first = SharedConversation("Shared SMS", "Queue: Sales\nAvery: hello")
    made = await env.connector.create_message_log(
        env.call(), message_log(contact, sms("m1", "hello"), additional_submission=chosen, shared=first)
    )
    update = MessageLogUpdate(
        contact=ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen"),
        message=sms("m2", "bye"),
        log_id=made.log_id or "",
        conversation_log_id="conv-1-2026-03-12",
        shared=SharedConversation("Shared SMS", "Queue: Sales\nAvery: hello\nAgent: bye"),
    )
    await env.connector.update_message_log(env.call(), update)
    [kept] = env.fake.leads_of(DEALER_ID, int(contact["ContactId"]))
    assert kept["notes"] == (
        "Dealer note\n\n[rc-sms-conv-1-2026-03-12]\nQueue: Sales\nAvery: hello\nAgent: bye\n[/rc-sms-conv-1-2026-03-12]"
    )


async def test_the_user_list_is_the_dealers_users_with_an_email(env: Env) -> None:
    env.fake.add_user(DEALER_ID, 13002, "Ana", "Lopez")
    env.fake.add_user(OTHER_DEALER_ID, 13003, "Sam", "Ortiz", "sam@example.test")
    users = await env.connector.get_user_list(env.call())
    assert [u.to_wire() for u in users] == [
        {"id": "13001", "name": "Morgan Rivera", "email": "morgan@example.test"}
    ]


async def test_a_dealer_outside_the_allowed_list_cannot_log_in(env: Env) -> None:
    settings = dict(env.connector.config.values, allowed_dealers=f" {OTHER_DEALER_ID} ,")
    connector = VinSolutionsConnector(ConnectorConfig(settings))

    async def login(dealer_id: int) -> bool:
        result = await connector.get_user_info(
            LoginRequest(
                auth_header="",
                hostname="",
                platform="vinsolutions",
                http=env.http,
                additional_info={"dealerId": str(dealer_id), "crmUserId": str(USER_ID)},
            )
        )
        return result.successful

    assert await login(DEALER_ID) is False
    assert await login(OTHER_DEALER_ID) is True


async def test_call_tracking_has_its_own_token_only_when_it_has_its_own_application(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    log = CallLogCreate(
        contact=ContactRef(str(contact["ContactId"]), PHONE, "contact"), call=call_record("s-3")
    )
    await found_ids(env, PHONE)
    await env.connector.create_call_log(env.call(), log)
    assert env.fake.token_requests() == 1

    settings = dict(env.connector.config.values)
    settings.update(
        call_tracking_client_id=settings["client_id"], call_tracking_client_secret=settings["client_secret"]
    )
    separate = VinSolutionsConnector(ConnectorConfig(settings))
    await separate.find_contact(env.call(), ContactLookup(PHONE))
    await separate.create_call_log(env.call(), log)
    assert env.fake.token_requests() == 3


async def test_a_name_search_finds_the_dealers_contact(env: Env) -> None:
    mine = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    env.fake.add_contact("Avery", "Chen", ["4155550100"], OTHER_DEALER_ID)
    env.fake.add_contact("Avery", "Stone", ["4155550111"])
    matches = await env.connector.find_contact_with_name(env.call(), "Avery Chen")
    assert [(c.id, c.name) for c in matches.contacts] == [(str(mine["ContactId"]), "Avery Chen")]


async def test_without_client_credentials_no_login_is_possible(env: Env) -> None:
    connector = VinSolutionsConnector(ConnectorConfig({"base_url": env.fake.base_url}))
    result = await connector.get_user_info(
        LoginRequest(
            auth_header="",
            hostname="",
            platform="vinsolutions",
            http=env.http,
            additional_info={"dealerId": str(DEALER_ID), "crmUserId": str(USER_ID)},
        )
    )
    assert not result.successful
    assert env.fake.token_requests() == 0


async def test_a_contact_is_shown_when_its_leads_cannot_be_listed(env: Env) -> None:
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    env.fake.inject(503, times=5, path_prefix="/leads", method="GET")
    matches = await env.connector.find_contact(env.call(), ContactLookup(PHONE))
    [found, _placeholder] = matches.contacts
    assert found.id == str(contact["ContactId"]) and found.additional_info is None


async def test_a_call_assigned_to_another_user_is_filed_under_that_user(env: Env) -> None:
    """The reference's resolveAssignedCrmUserId: the CRM user the admin mapped the call's extension to is the
    call detail's `providerUserId` and `vinProperties.userId`; without one, the logged-in user."""
    colleague = env.fake.add_user(DEALER_ID, 13077, "Jamie", "Soto", "jamie@example.test")
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    ref = ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen")
    assigned = CallLogCreate(contact=ref, call=call_record("s-assigned"), composed_log_details="- Note: hi")
    assigned.owner = CrmUser(str(colleague["UserId"]), "Jamie Soto", "jamie@example.test")
    mine = CallLogCreate(contact=ref, call=call_record("s-mine"), composed_log_details="- Note: hi")
    await env.connector.create_call_log(env.call(), assigned)
    await env.connector.create_call_log(env.call(), mine)
    details = {d["providerReferenceId"]: d for d in env.fake.call_details_of(DEALER_ID, contact["ContactId"])}
    assert details["s-assigned"]["providerUserId"] == "13077"
    assert details["s-assigned"]["vinProperties"]["userId"] == 13077
    assert details["s-mine"]["providerUserId"] == str(USER_ID)
    assert details["s-mine"]["vinProperties"]["userId"] == USER_ID


async def test_choosing_a_lead_later_keeps_the_call_with_the_user_it_is_filed_under(env: Env) -> None:
    """An update that sets the lead sends `vinProperties.userId` too (the reference's PATCH): the call detail's
    own user, so a call assigned to a colleague is not moved to whoever edits it."""
    colleague = env.fake.add_user(DEALER_ID, 13077, "Jamie", "Soto", "jamie@example.test")
    contact = env.fake.add_contact("Avery", "Chen", ["4155550100"])
    lead = env.fake.add_lead(DEALER_ID, contact["ContactId"])
    ref = ContactRef(str(contact["ContactId"]), PHONE, "contact", "Avery Chen")
    log = CallLogCreate(contact=ref, call=call_record("s-lead"), composed_log_details="- Note: hi")
    log.owner = CrmUser(str(colleague["UserId"]), "Jamie Soto")
    created = await env.connector.create_call_log(env.call(), log)
    assert created.log_id
    fetched = await env.connector.get_call_log(env.call(), CallLogRef(created.log_id))
    await env.connector.update_call_log(
        env.call(),
        CallLogUpdate(
            log=CallLogRef(created.log_id),
            additional_submission={"leads": lead["leadId"]},
            existing_call_log_details=fetched.info.full_log_response,
        ),
    )
    [detail] = env.fake.call_details_of(DEALER_ID, contact["ContactId"])
    assert detail["vinProperties"]["leadId"] == lead["leadId"]
    assert detail["vinProperties"]["userId"] == 13077
    assert len(env.fake.requests_to(f"/calldetails/id/{created.log_id}", "PATCH")) == 1
