"""Sales orders and opportunities: offered on lookups, written on phone calls, and user notes through the
reference SuiteApp's `customscript_createusernotes` RESTlet; and the name search."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from fake_netsuite import (
    DEFAULT_ACCOUNT,
    RECORD_PREFIX,
    RESTLET_PATH,
    SUITEQL_PATH,
    FakeNetSuite,
    restlet_host,
)

from appconnect.connectors.netsuite import NetSuiteConnector
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
    DispositionUpdate,
    Message,
    MessageLogCreate,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

COMPOSED = "- Note: Asked about the renewal\n- Duration: 8 minutes"
NOTES_URL = f"/~{restlet_host(DEFAULT_ACCOUNT)}{RESTLET_PATH}"
BOTH = {"enableSalesOrderLogging": {"value": True}, "enableOpportunityLogging": {"value": True}}


@dataclass
class Env:
    fake: FakeNetSuite
    connector: NetSuiteConnector
    call: CrmCall

    def queries(self) -> list[str]:
        return [str(r.json["q"]) for r in self.fake.requests_to(self.fake.path(SUITEQL_PATH), "POST")]

    def restlet_calls(self, method: str | None = None) -> list[Any]:
        """The createusernotes calls (the SuiteApp's other scripts, e.g. the time zone, are not counted)."""
        calls = self.fake.restlet_calls("customscript_createusernotes")
        return [r for r in calls if method is None or r.method == method]


@pytest.fixture
async def env(fake_netsuite: FakeNetSuite) -> AsyncIterator[Env]:
    """A user of the sandbox account with both transaction settings on (`with_settings` to change them)."""
    fake_netsuite.account().suiteapp = (
        True  # createusernotes is the SuiteApp's (off: see the no-SuiteApp tests)
    )
    connector = NetSuiteConnector(ConnectorConfig(fake_netsuite.connector_config()))
    auth = f"Bearer {fake_netsuite.issue_tokens(DEFAULT_ACCOUNT).access_token}"
    user = UserView(
        id=f"1~{DEFAULT_ACCOUNT}-netsuite",
        platform="netsuite",
        hostname="1234567-sb1.app.netsuite.com",
        timezone_offset="+00:00",
        platform_additional_info={"name": "Alex Agent", "subsidiaryId": "1"},
        user_settings=dict(BOTH),
    )
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=connector.base_url(user), auth_header=auth)
        yield Env(fake_netsuite, connector, CrmCall(user=user, auth_header=auth, http=http))
    finally:
        await client.aclose()


def _settings(env: Env, **values: object) -> None:
    env.call.user.user_settings = {key: {"value": value} for key, value in values.items()}


def _call_record() -> CallRecord:
    return CallRecord(
        session_id="s-1",
        direction="Inbound",
        start_time="2026-03-12T14:35:20.000Z",
        duration=487,
        from_party=CallParty(phone_number="+14155550142", name="Maya Patel"),
        to_party=CallParty(phone_number="+14155550101", name="Jordan Lee"),
    )


def _log(contact_id: str, kind: str = "contact", **chosen: Any) -> CallLogCreate:
    return CallLogCreate(
        contact=ContactRef(id=contact_id, name="Maya Patel", phone_number="+14155550142", type=kind),
        call=_call_record(),
        composed_log_details=COMPOSED,
        additional_submission=chosen,
    )


def _company_with_orders(env: Env) -> tuple[int, int, int, int]:
    """(customer, its older sales order, its newer sales order, its opportunity)."""
    company = env.fake.add_customer("Acme Corp", "+1 212 555 0100")["id"]
    old = env.fake.add_transaction("salesorder", company, "Widgets", created="9/30/2026")["id"]
    new = env.fake.add_transaction("salesorder", company, "Gadgets", created="11/2/2026")["id"]
    opportunity = env.fake.add_transaction("opportunity", company, "Renewal")["id"]
    return company, old, new, opportunity


async def _logged(env: Env, **chosen: Any) -> tuple[str, int]:
    """A logged call on a contact of a company with orders; (log id, the newer sales order)."""
    company, _old, new, _opp = _company_with_orders(env)
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")["id"]
    env.fake.link_contact(contact, company)
    result = await env.connector.create_call_log(env.call, _log(str(contact), **chosen))
    assert result.log_id is not None
    return result.log_id, new


def _message(env: Env, log_id: str) -> str:
    return str(env.fake.snapshot(env.fake.account().phonecalls[int(log_id)])["message"])


# --- lookup ------------------------------------------------------------------------------------------------


async def test_a_contact_offers_its_companys_sales_orders_and_opportunities_newest_first(env: Env) -> None:
    company, old, new, opportunity = _company_with_orders(env)
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")["id"]
    env.fake.link_contact(contact, company)
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    [found] = [c for c in matches.contacts if c.id == str(contact)]
    assert found.additional_info == {
        "salesorder": [
            {"const": str(new), "title": f"Sales Order #SO{new} Gadgets"},
            {"const": str(old), "title": f"Sales Order #SO{old} Widgets"},
        ],
        "opportunity": [{"const": str(opportunity), "title": f"Opportunity #OP{opportunity} Renewal"}],
    }
    # the contact's company is the transactions' entity, never the contact itself
    assert any(f"entity = {company} AND type = 'SalesOrd'" in q for q in env.queries())
    assert not any(f"entity = {contact} " in q for q in env.queries())


async def test_a_customer_offers_its_own_transactions_only_those_the_settings_turn_on(env: Env) -> None:
    _settings(env, enableSalesOrderLogging=True)
    company, old, new, _opportunity = _company_with_orders(env)
    other = env.fake.add_customer("Other Inc", "+1 718 555 0199")["id"]
    env.fake.add_transaction("salesorder", other, "Not theirs")
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+12125550100"))
    [found] = [c for c in matches.contacts if c.id == str(company)]
    assert found.additional_info is not None
    assert set(found.additional_info) == {"salesorder"}
    assert [o["const"] for o in found.additional_info["salesorder"]] == [str(new), str(old)]
    assert all("Opprtnty" not in q for q in env.queries())


async def test_settings_off_send_no_transaction_query(env: Env) -> None:
    _settings(env)
    company, *_ = _company_with_orders(env)
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+12125550100"))
    [found] = [c for c in matches.contacts if c.id == str(company)]
    assert found.additional_info is None
    assert all("transaction" not in q for q in env.queries())


async def test_contacts_of_one_company_cost_one_query_per_kind(env: Env) -> None:
    company, *_ = _company_with_orders(env)
    for name in ("Maya Patel", "Max Patel"):
        env.fake.link_contact(env.fake.add_contact(name, "415-555-0142")["id"], company)
    loner = env.fake.add_contact("Lone Wolf", "4155550142")["id"]
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    offered = {c.id: c.additional_info for c in matches.contacts if not c.is_new_contact}
    assert offered[str(loner)] is None  # no company: nothing to offer
    assert len([q for q in env.queries() if "FROM transaction" in q]) == 2


async def test_a_role_that_cannot_read_transactions_still_finds_the_caller(env: Env) -> None:
    company, *_ = _company_with_orders(env)
    with env.fake._lock:
        env.fake.account().denied_permissions = {"TRAN_SALESORD"}
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+12125550100"))
    [found] = [c for c in matches.contacts if not c.is_new_contact]
    assert (found.id, found.additional_info) == (str(company), None)
    assert any("FROM transaction" in q for q in env.queries())  # asked, refused, left out


# --- call log ----------------------------------------------------------------------------------------------


async def test_the_chosen_sales_order_is_the_phone_calls_transaction(env: Env) -> None:
    company, _old, new, opportunity = _company_with_orders(env)
    contact = env.fake.add_contact("Ann Lee", "+1 415 555 0143")["id"]
    env.fake.link_contact(contact, company)
    both = _log(str(contact), salesorder=str(new), opportunity=str(opportunity))
    result = await env.connector.create_call_log(env.call, both)
    assert result.log_id is not None
    [sent] = env.fake.requests_to(env.fake.path(f"{RECORD_PREFIX}/phonecall"), "POST")
    # the reference's shape: a number and the kind; a sales order wins over an opportunity
    assert sent.json["transaction"] == {"id": new, "type": "salesorder"}
    assert sent.json["contact"] == {"id": str(contact)}


async def test_an_opportunity_alone_is_the_transaction(env: Env) -> None:
    company, _old, _new, opportunity = _company_with_orders(env)
    result = await env.connector.create_call_log(
        env.call, _log(str(company), "custjob", opportunity=opportunity)
    )
    assert result.log_id is not None
    stored = env.fake.snapshot(env.fake.account().phonecalls[int(result.log_id)])
    assert stored["transaction"] == {"id": opportunity, "type": "opportunity"}


@pytest.mark.parametrize("junk", ["401 OR 1=1", "-3", "0", "abc", True, 4.5, "٤٠١", "1" * 30])
async def test_a_choice_that_is_no_record_id_is_never_sent(env: Env, junk: Any) -> None:
    company, *_ = _company_with_orders(env)
    result = await env.connector.create_call_log(env.call, _log(str(company), "custjob", salesorder=junk))
    assert result.log_id is not None
    assert "transaction" not in env.fake.snapshot(env.fake.account().phonecalls[int(result.log_id)])


async def test_netsuite_refuses_a_transaction_that_does_not_exist(env: Env) -> None:
    company, *_ = _company_with_orders(env)
    with pytest.raises(CrmHttpError) as failure:
        await env.connector.create_call_log(env.call, _log(str(company), "custjob", salesorder=99999))
    assert failure.value.status == 400
    assert env.fake.snapshot(env.fake.account().phonecalls) == {}


# --- dispositions --------------------------------------------------------------------------------------------


async def test_a_disposition_writes_one_user_note_and_links_it_in_the_call(env: Env) -> None:
    log_id, order = await _logged(env)
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": str(order)})
    result = await env.connector.upsert_call_disposition(env.call, update)
    assert result.log_id == log_id
    [note] = env.fake.user_notes()
    assert note["transaction"] == order
    assert note["title"] == "Inbound Call from Maya Patel"
    assert note["note"].startswith(COMPOSED) and "[rc-call-" not in note["note"]
    message = _message(env, log_id)
    assert message.endswith(
        "\n\n Sales Order Call Logs (Do Not Edit)\n"
        f"- SalesOrderNoteUrl: https://1234567-sb1.app.netsuite.com/app/crm/common/note.nl?id={note['id']}"
        f" SalesOrderId: {order}"
    )
    assert "[rc-call-" in message  # the duplicate-check marker stays


async def test_a_disposition_sent_twice_updates_the_same_note(env: Env) -> None:
    log_id, order = await _logged(env)
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    await env.connector.upsert_call_disposition(env.call, update)
    await env.connector.upsert_call_disposition(env.call, update)
    assert len(env.fake.user_notes()) == 1
    assert len(env.restlet_calls("POST")) == 1
    [put] = env.restlet_calls("PUT")
    assert put.json["noteId"] == env.fake.user_notes()[0]["id"]
    assert put.query == {"script": "customscript_createusernotes", "deploy": "customdeploy_createusernotes"}
    assert _message(env, log_id).count("SalesOrderNoteUrl") == 1


async def test_sales_order_and_opportunity_each_get_their_note(env: Env) -> None:
    log_id, order = await _logged(env)
    company = int(env.fake.snapshot(env.fake.account().transactions[order])["entity"]["id"])
    opportunity = env.fake.add_transaction("opportunity", company, "Upsell")["id"]
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order, "opportunity": opportunity})
    await env.connector.upsert_call_disposition(env.call, update)
    await env.connector.upsert_call_disposition(env.call, update)
    assert sorted(n["transaction"] for n in env.fake.user_notes()) == sorted([order, opportunity])
    message = _message(env, log_id)
    assert "Opportunity Call Logs (Do Not Edit)" in message
    assert f"OpportunityId: {opportunity}" in message and f"SalesOrderId: {order}" in message


async def test_a_disposition_the_settings_do_not_allow_does_nothing(env: Env) -> None:
    log_id, order = await _logged(env)
    _settings(env, enableOpportunityLogging=True)
    result = await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(log_id), {"salesorder": order, "opportunity": "x'; --"})
    )
    assert result.log_id is None
    assert env.restlet_calls() == []


async def test_a_note_whose_answer_was_lost_is_never_written_twice(env: Env) -> None:
    log_id, order = await _logged(env)
    env.fake.inject(500, path_prefix=NOTES_URL, method="POST", when="after")
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    with pytest.raises(CrmHttpError):
        await env.connector.upsert_call_disposition(env.call, update)
    assert "SalesOrderNoteUrl: pending" in _message(env, log_id)
    again = await env.connector.upsert_call_disposition(env.call, update)
    assert again.return_message is not None and again.return_message.message_type == "warning"
    assert len(env.fake.user_notes()) == 1  # written by the first try, not by the second
    assert len(env.restlet_calls("POST")) == 1


#: how a deployed RESTlet answers a request its script throws on (Oracle, "SuiteScript 2.x RESTlet Error
#: Handling": 400 and the error's code); not the undeployed script's SSS_INVALID_SCRIPTLET_ID
SCRIPT_ERROR = {"error": {"code": "JS_EXCEPTION", "message": "TypeError: Cannot read property 'id' of null"}}


async def test_a_note_written_but_answered_unreadably_is_never_written_twice(env: Env) -> None:
    """The RESTlet wrote the note and answered 2xx, but an answer the server refuses to read (nested too
    deep): the outcome is unknown, so the link stays pending and a second disposition writes no second note."""
    log_id, order = await _logged(env)
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    env.fake.inject(
        200, path_prefix=NOTES_URL, method="POST", when="after", body={"success": True, "x": deep}
    )
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    with pytest.raises(CrmHttpError):
        await env.connector.upsert_call_disposition(env.call, update)
    await env.connector.upsert_call_disposition(env.call, update)
    assert len(env.fake.user_notes()) == 1
    assert len(env.restlet_calls("POST")) == 1


async def test_a_refused_note_warns_without_blaming_the_suiteapp_and_can_be_tried_again(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    log_id, order = await _logged(env)
    env.fake.inject(400, path_prefix=NOTES_URL, method="POST", body=SCRIPT_ERROR)
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    result = await env.connector.upsert_call_disposition(env.call, update)
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert "refused" in result.return_message.message
    assert "needs" not in result.return_message.message  # not the "install the SuiteApp" warning
    assert "SalesOrderNoteUrl" not in _message(env, log_id)  # no pending line left behind
    [line] = [r for r in caplog.records if "createusernotes" in r.getMessage()]
    assert "400 JS_EXCEPTION" in line.getMessage()
    assert env.call.auth_header not in line.getMessage() and "TypeError" not in line.getMessage()
    await env.connector.upsert_call_disposition(env.call, update)
    assert len(env.fake.user_notes()) == 1


async def test_a_refused_note_does_not_stop_the_other_transaction(env: Env) -> None:
    log_id, order = await _logged(env)
    company = int(env.fake.snapshot(env.fake.account().transactions[order])["entity"]["id"])
    opportunity = env.fake.add_transaction("opportunity", company, "Upsell")["id"]
    env.fake.inject(400, path_prefix=NOTES_URL, method="POST", body=SCRIPT_ERROR)
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order, "opportunity": opportunity})
    result = await env.connector.upsert_call_disposition(env.call, update)
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert [n["transaction"] for n in env.fake.user_notes()] == [opportunity]


async def test_a_refused_note_update_keeps_the_link_and_warns(env: Env) -> None:
    log_id, order = await _logged(env)
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    await env.connector.upsert_call_disposition(env.call, update)
    with_link = _message(env, log_id)
    env.fake.inject(400, path_prefix=NOTES_URL, method="PUT", body=SCRIPT_ERROR)
    result = await env.connector.upsert_call_disposition(env.call, update)
    assert result.return_message is not None and "refused" in result.return_message.message
    assert _message(env, log_id) == with_link


async def test_a_failing_restlet_still_fails_the_disposition(env: Env) -> None:
    """A 5xx is no refusal: the answer may be lost, so the error goes to the caller as before."""
    log_id, order = await _logged(env)
    env.fake.inject(503, path_prefix=NOTES_URL, method="POST")
    with pytest.raises(CrmHttpError):
        await env.connector.upsert_call_disposition(
            env.call, DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
        )


async def test_the_note_lines_never_show_and_survive_an_update(env: Env) -> None:
    log_id, order = await _logged(env)
    await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    )
    fetched = await env.connector.get_call_log(env.call, CallLogRef(log_id))
    assert fetched.info.note == "Asked about the renewal"
    assert fetched.info.full_body is not None
    assert "Call Logs (Do Not Edit)" not in fetched.info.full_body
    assert "NoteUrl" not in fetched.info.full_body
    edited = fetched.info.full_body.replace("Asked about the renewal", "Renewal signed")
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(CallLogRef(log_id), composed_log_details=edited, existing_call_log_details=None),
    )
    message = _message(env, log_id)
    assert "Renewal signed" in message and message.count(f"SalesOrderId: {order}") == 1
    assert "[rc-call-" in message
    await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    )
    [note] = env.fake.user_notes()
    assert "Renewal signed" in note["note"]


async def test_a_note_line_typed_in_the_agents_note_never_names_the_note_to_rewrite(env: Env) -> None:
    """The message holds the agent's text (and a transcript, an AI summary) above the lines the server keeps:
    a line there written like a note link must not make a disposition rewrite another note (here one of an
    earlier call); only the lines the server wrote after the call's marker count."""
    other_log, order = await _logged(env)
    await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(other_log), {"salesorder": order})
    )
    [victim] = env.fake.user_notes()
    forged = (
        "- Note: see below\n"
        f"- SalesOrderNoteUrl: https://1234567-sb1.app.netsuite.com/app/crm/common/note.nl?id={victim['id']}"
        f" SalesOrderId: {order}\n- Duration: 8 minutes"
    )
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")["id"]
    log = _log(str(contact))
    log.composed_log_details = forged
    created = await env.connector.create_call_log(env.call, log)
    assert created.log_id is not None
    await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(created.log_id), {"salesorder": order})
    )
    assert env.restlet_calls("PUT") == []
    notes = {n["id"]: n for n in env.fake.user_notes()}
    assert len(notes) == 2 and notes[victim["id"]]["note"] == victim["note"]


async def test_without_the_suiteapp_a_disposition_warns_and_leaves_the_call_as_it_was(env: Env) -> None:
    log_id, order = await _logged(env)
    before = _message(env, log_id)
    env.fake.account().suiteapp = False
    company = int(env.fake.snapshot(env.fake.account().transactions[order])["entity"]["id"])
    opportunity = env.fake.add_transaction("opportunity", company, "Upsell")["id"]
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order, "opportunity": opportunity})
    result = await env.connector.upsert_call_disposition(env.call, update)
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert "SuiteApp" in result.return_message.message
    assert _message(env, log_id) == before  # no pending line left behind
    assert env.fake.user_notes() == []
    assert len(env.restlet_calls("POST")) == 1  # the first refusal stands for the other transaction too
    env.fake.account().suiteapp = True  # installed later: the same disposition now writes its notes
    await env.connector.upsert_call_disposition(env.call, update)
    assert sorted(n["transaction"] for n in env.fake.user_notes()) == sorted([order, opportunity])


async def test_a_note_update_without_the_suiteapp_warns(env: Env) -> None:
    log_id, order = await _logged(env)
    update = DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    await env.connector.upsert_call_disposition(env.call, update)
    with_link = _message(env, log_id)
    env.fake.account().suiteapp = False
    result = await env.connector.upsert_call_disposition(env.call, update)
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert _message(env, log_id) == with_link


# --- message logs --------------------------------------------------------------------------------------------


def _sms(contact_id: int, **chosen: Any) -> MessageLogCreate:
    return MessageLogCreate(
        contact=ContactRef(id=str(contact_id), name="Acme Corp", phone_number="+12125550100", type="custjob"),
        message=Message(id="m-1", subject="Is the order shipped?", creation_time="2026-03-12T14:35:20.000Z"),
        conversation_id="c-1",
        conversation_log_id="c-1-2026-03-12",
        additional_submission=chosen,
    )


async def test_a_message_log_on_a_sales_order_writes_the_conversation_as_its_note(env: Env) -> None:
    company, _old, new, _opportunity = _company_with_orders(env)
    result = await env.connector.create_message_log(env.call, _sms(company, salesorder=str(new)))
    assert result.log_id is not None
    [note] = env.fake.user_notes()
    assert note["transaction"] == new
    assert note["title"] == "SMS conversation with Acme Corp - 26/03/12"
    assert "Is the order shipped?" in note["note"] and "[rc-" not in note["note"]


async def test_a_message_log_without_a_choice_calls_no_restlet(env: Env) -> None:
    company, *_ = _company_with_orders(env)
    result = await env.connector.create_message_log(env.call, _sms(company, salesorder="nope"))
    assert result.log_id is not None
    assert env.restlet_calls() == []


async def test_a_failed_message_note_keeps_the_log_and_says_so(env: Env) -> None:
    company, _old, new, _opportunity = _company_with_orders(env)
    env.fake.inject(400, path_prefix=NOTES_URL, method="POST", body=SCRIPT_ERROR)
    result = await env.connector.create_message_log(env.call, _sms(company, salesorder=new))
    assert result.log_id is not None and int(result.log_id) in env.fake.account().phonecalls
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert "SuiteApp" not in result.return_message.message  # a script error, not an absent SuiteApp
    assert env.fake.user_notes() == []


async def test_a_message_log_without_the_suiteapp_warns_and_keeps_the_log(env: Env) -> None:
    company, _old, new, _opportunity = _company_with_orders(env)
    env.fake.account().suiteapp = False
    result = await env.connector.create_message_log(env.call, _sms(company, salesorder=new))
    assert result.log_id is not None and int(result.log_id) in env.fake.account().phonecalls
    assert result.return_message is not None and "SuiteApp" in result.return_message.message
    assert env.fake.user_notes() == []


# --- name search ---------------------------------------------------------------------------------------------


async def test_name_search_finds_contacts_and_customers_with_their_choices(env: Env) -> None:
    company, _old, new, _opportunity = _company_with_orders(env)
    contact = env.fake.add_contact("Maya Acmeson", "+1 415 555 0142")["id"]
    env.fake.link_contact(contact, company)
    env.fake.add_contact("Bob Other", "+1 415 555 0144")
    matches = await env.connector.find_contact_with_name(env.call, "  ACME ")
    found = {c.id: c for c in matches.contacts}
    assert set(found) == {str(company), str(contact)}
    assert found[str(contact)].phone == "+1 415 555 0142"
    assert found[str(contact)].additional_info is not None
    assert found[str(contact)].additional_info["salesorder"][0]["const"] == str(new)


async def test_name_search_finds_vendors_by_name_company_and_entity_id(env: Env) -> None:
    person = env.fake.add_vendor("Nora Acmeworth", "+1 415 555 0150")["id"]
    company = env.fake.add_vendor("Acme Supplies", "+1 415 555 0151", company=True)["id"]
    env.fake.add_vendor("Other Vendor", "+1 415 555 0152")
    matches = await env.connector.find_contact_with_name(env.call, "acme")
    vendors = {c.id: c for c in matches.contacts if c.type == "vendor"}
    assert set(vendors) == {str(person), str(company)}
    assert vendors[str(company)].name == "Acme Supplies" and vendors[str(company)].phone == "+1 415 555 0151"
    assert all(v.additional_info is None for v in vendors.values())
    _settings(env, contactsSearchId=["contact", "customer"])
    again = await env.connector.find_contact_with_name(env.call, "acme")
    assert not [c for c in again.contacts if c.type == "vendor"]


async def test_name_search_quotes_what_was_typed(env: Env) -> None:
    env.fake.add_contact("Sean O'Brien", "+1 415 555 0145")
    matches = await env.connector.find_contact_with_name(env.call, "o'brien")
    assert [c.name for c in matches.contacts] == ["Sean O'Brien"]
    assert any("'%o''brien%'" in q for q in env.queries())
    nothing = await env.connector.find_contact_with_name(env.call, "' OR 1=1 --")
    assert nothing.contacts == []


async def test_name_search_ignores_wildcards_and_too_short_names(env: Env) -> None:
    env.fake.add_contact("Maya Patel", "+1 415 555 0142")
    for typed in ("%", "_", "a", " % "):
        matches = await env.connector.find_contact_with_name(env.call, typed)
        assert matches.contacts == []
    assert env.queries() == []


async def test_a_restlet_not_at_its_url_counts_as_no_suiteapp(env: Env) -> None:
    """Oracle: a 404 is "the RESTlet called is not at the URL used", as a script never deployed."""
    log_id, order = await _logged(env)
    before = _message(env, log_id)
    env.fake.inject(404, path_prefix=NOTES_URL, method="POST", body={"error": {"code": "NOT_FOUND"}})
    result = await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(log_id), {"salesorder": order})
    )
    assert result.return_message is not None and "SuiteApp" in result.return_message.message
    assert _message(env, log_id) == before
