"""What the reference Clio connector does beyond logging, end to end against FakeClio over loopback HTTP.

MMS images and faxes copied into Clio Documents (downloaded from RingCentral's media host, which the fake
also plays, and only from a host the server allows), SMS time entries, the notification subscriber sent with
every communication, and the call form's `logTimeEntry` and `nonBillable` fields.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fake_clio import BUCKET_HEADERS, FakeClio
from test_clio_e2e import Agent, call_body, only

from tests.conftest import LiveServer, conversation_body, new_phone, sms_message
from tests.support.e2e import client_of, server_beside

JsonDict = dict[str, Any]
SETTINGS = [
    "clioDefaultNonBillableTick",
    "smsTimeTrackingEnabled",
    "smsTimeTrackingMinimumDuration",
    "smsTimeTrackingDefaultBillable",
]


@pytest.fixture(scope="session")
def clio_media_live(
    server: LiveServer, _fake_clio_server: FakeClio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that downloads attachments from the fake's origin only (it plays RingCentral's media host)."""
    with server_beside(
        server,
        _fake_clio_server.env(),
        tmp_path_factory.mktemp("clio-media-server"),
        crm_rate_limit="off",
        rc_media_hosts=_fake_clio_server.base_url,
    ) as live:
        yield live


@pytest.fixture
async def agent(clio_media_live: LiveServer, fake_clio: FakeClio) -> AsyncIterator[Agent]:
    async with client_of(clio_media_live) as http:
        agent = Agent(http, clio_media_live, fake_clio)
        await agent.login()
        # every test logs in as the fake's one user: no setting of an earlier test carries over
        cleared = await http.post(
            "/user/settings", headers=agent.auth, json={"settingKeysToRemove": SETTINGS}
        )
        assert cleared.status_code == 200, cleared.text
        yield agent


async def save_settings(agent: Agent, settings: JsonDict) -> None:
    response = await agent.http.post(
        "/user/settings",
        headers=agent.auth,
        json={"userSettings": {k: {"value": v} for k, v in settings.items()}},
    )
    assert response.status_code == 200, response.text


def person(fake: FakeClio) -> tuple[JsonDict, str]:
    phone = new_phone()
    return fake.add_contact("Maya Patel", [phone]), phone


def message_with(message_id: str, phone: str, attachment: JsonDict, **extra: Any) -> JsonDict:
    message = sms_message(message_id, phone, "See attached")
    message.update(attachments=[attachment], **extra)
    return message


def media_requests(fake: FakeClio) -> list[Any]:
    return fake.requests_to("/restapi/v1.0/", "GET")


# ------------------------------------------------------------------------------------------------------------
# notification subscribers, logTimeEntry, nonBillable
# ------------------------------------------------------------------------------------------------------------


async def test_a_communication_names_the_user_to_notify(agent: Agent, fake_clio: FakeClio) -> None:
    contact, phone = person(fake_clio)
    logged = await agent.log_call(call_body(f"s-{uuid.uuid4().hex}", str(contact["id"]), phone))
    assert logged["successful"] is True, logged
    [create] = fake_clio.requests_to("/api/v4/communications.json", "POST")
    assert create.json["data"]["notification_event_subscribers"] == [{"user_id": fake_clio.user["id"]}]


async def test_an_unticked_log_time_entry_writes_no_time_entry(agent: Agent, fake_clio: FakeClio) -> None:
    contact, phone = person(fake_clio)
    found = await agent.find_contact(phone)
    [offered] = [c for c in found["contact"] if not c.get("isNewContact")]
    assert offered["additionalInfo"]["logTimeEntry"] is True
    logged = await agent.log_call(
        call_body(
            f"s-{uuid.uuid4().hex}", str(contact["id"]), phone, additionalSubmission={"logTimeEntry": False}
        )
    )
    assert logged["successful"] is True, logged
    assert len(fake_clio.communications) == 1
    assert fake_clio.activities == {}


async def test_non_billable_of_the_form_wins_over_the_billable_status(
    agent: Agent, fake_clio: FakeClio
) -> None:
    contact, phone = person(fake_clio)
    submission = {"nonBillable": True, "billableStatus": "billable", "logTimeEntry": True}
    logged = await agent.log_call(
        call_body(f"s-{uuid.uuid4().hex}", str(contact["id"]), phone, additionalSubmission=submission)
    )
    assert logged["successful"] is True, logged
    entry = only(fake_clio.activities)
    assert (entry["non_billable"], entry["quantity"]) == (True, 487)


async def test_the_reference_billable_option_as_default_is_read(agent: Agent, fake_clio: FakeClio) -> None:
    """The reference stores the default as `billable`/`non-billable`; a settings import keeps that value."""
    await save_settings(agent, {"clioDefaultNonBillableTick": "non-billable"})
    contact, phone = person(fake_clio)
    await agent.log_call(call_body(f"s-{uuid.uuid4().hex}", str(contact["id"]), phone))
    assert only(fake_clio.activities)["non_billable"] is True


# ------------------------------------------------------------------------------------------------------------
# SMS time entries
# ------------------------------------------------------------------------------------------------------------


async def test_outbound_sms_bills_at_least_the_minimum(agent: Agent, fake_clio: FakeClio) -> None:
    await save_settings(
        agent,
        {
            "smsTimeTrackingEnabled": True,
            "smsTimeTrackingMinimumDuration": "120",
            "smsTimeTrackingDefaultBillable": "non-billable",
        },
    )
    contact, phone = person(fake_clio)
    matter = fake_clio.add_matter("Lease dispute", client_id=contact["id"])
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    inbound = sms_message(f"m-{uuid.uuid4().hex[:8]}", phone, "Is the lease ready?")
    sent = sms_message(
        f"m-{uuid.uuid4().hex[:8]}", phone, "Yes", direction="Outbound", at="2026-03-12T14:36:00.000Z"
    )
    sent["typingDurationMs"] = 45_000
    body = conversation_body(conversation, str(contact["id"]), phone, [sent, inbound], contact_type="Person")
    body["additionalSubmission"] = {"matters": matter["id"]}
    logged = await agent.log_messages(body)
    assert logged["successful"] is True, logged
    communication = only(fake_clio.communications)
    entry = only(fake_clio.activities)  # the inbound message bills nothing
    assert entry["communication"]["id"] == communication["id"]
    assert (entry["quantity"], entry["non_billable"], entry["matter"]["id"]) == (120, True, matter["id"])
    assert entry["note"].startswith("SMS message with Maya Patel sent on 03/12/2026 at ")

    long = sms_message(
        f"m-{uuid.uuid4().hex[:8]}", phone, "Long answer", direction="Outbound", at="2026-03-12T15:00:00.000Z"
    )
    long["typingDurationMs"] = 300_000
    body = conversation_body(conversation, str(contact["id"]), phone, [long], contact_type="Person")
    body["additionalSubmission"] = {"matters": matter["id"]}
    appended = await agent.log_messages(body)
    assert appended["successful"] is True, appended
    assert sorted(a["quantity"] for a in fake_clio.activities.values()) == [120, 300]


async def test_an_adopted_sms_log_gets_its_time_entry_once(agent: Agent, fake_clio: FakeClio) -> None:
    """The create's answer is lost after Clio wrote the communication (the time entry never sent): the retry
    adopts the communication and adds the entry; a later retry adds none."""
    await save_settings(agent, {"smsTimeTrackingEnabled": True})
    contact, phone = person(fake_clio)
    sent = sms_message(f"m-{uuid.uuid4().hex[:8]}", phone, "On my way", direction="Outbound")
    body = conversation_body(f"conv-{uuid.uuid4().hex[:8]}", str(contact["id"]), phone, [sent])
    fake_clio.inject(500, path_prefix="/api/v4/communications.json", method="POST", when="after")
    lost = await agent.log_messages(body)
    assert lost["successful"] is False, lost
    assert len(fake_clio.communications) == 1 and fake_clio.activities == {}
    adopted = await agent.log_messages(body)
    assert adopted["successful"] is True, adopted
    entry = only(fake_clio.activities)
    assert entry["communication"]["id"] == only(fake_clio.communications)["id"] and entry["quantity"] == 30
    again = await agent.log_messages(body)
    assert again["successful"] is True and len(fake_clio.activities) == 1, again


async def test_sms_time_tracking_is_off_by_default(agent: Agent, fake_clio: FakeClio) -> None:
    contact, phone = person(fake_clio)
    sent = sms_message(f"m-{uuid.uuid4().hex[:8]}", phone, "Hello", direction="Outbound")
    logged = await agent.log_messages(
        conversation_body(f"conv-{uuid.uuid4().hex[:8]}", str(contact["id"]), phone, [sent])
    )
    assert logged["successful"] is True, logged
    assert fake_clio.activities == {}


# ------------------------------------------------------------------------------------------------------------
# images and faxes into Clio Documents
# ------------------------------------------------------------------------------------------------------------


async def test_an_mms_image_is_uploaded_to_the_matters_documents(agent: Agent, fake_clio: FakeClio) -> None:
    contact, phone = person(fake_clio)
    matter = fake_clio.add_matter("Lease dispute", client_id=contact["id"])
    picture = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 64
    uri = fake_clio.add_media("image/png", picture)
    attachment = {"type": "MmsAttachment", "uri": uri, "contentType": "image/png"}
    body = conversation_body(
        f"conv-{uuid.uuid4().hex[:8]}",
        str(contact["id"]),
        phone,
        [message_with(f"m-{uuid.uuid4().hex[:8]}", phone, attachment)],
    )
    body["logInfo"]["rcAccessToken"] = fake_clio.rc_token
    body["additionalSubmission"] = {"matters": matter["id"]}
    logged = await agent.log_messages(body)
    assert logged["successful"] is True, logged

    document = only(fake_clio.documents)
    assert document["parent"]["id"] == matter["id"] and document["parent"]["type"] == "Matter"
    assert document["name"] == "Inbound Image Message - Maya Patel - 03/12/2026.png"
    version = document["latest_document_version"]
    assert version["fully_uploaded"] is True and fake_clio.uploads[version["uuid"]] == picture
    communication = only(fake_clio.communications)
    assert f"/nc/#/documents/{document['id']}/details" in communication["body"]
    # RingCentral's token went to RingCentral only, in a header; Clio's token never went to the bucket
    [download] = media_requests(fake_clio)
    assert download.auth_scheme == "Bearer" and fake_clio.rc_token not in download.raw_query
    [put] = fake_clio.requests_to("/bucket/", "PUT")
    assert put.auth_scheme is None
    assert all(put.headers[k] == v for k, v in BUCKET_HEADERS.items())
    for request in fake_clio.requests_to("/api/v4/"):
        assert fake_clio.rc_token not in str(request.json)


async def test_a_fax_is_uploaded_to_the_contacts_documents(agent: Agent, fake_clio: FakeClio) -> None:
    contact, phone = person(fake_clio)
    pdf = b"%PDF-1.4\n" + uuid.uuid4().bytes * 32
    uri = fake_clio.add_media("application/pdf", pdf)
    attachment = {
        "type": "RenderedDocument",
        "uri": uri,
        "contentType": "application/pdf",
        "link": "https://app.ringcentral.com/fax/1",
    }
    fax = message_with(f"m-{uuid.uuid4().hex[:8]}", phone, attachment, type="Fax")
    body = conversation_body(f"conv-{uuid.uuid4().hex[:8]}", str(contact["id"]), phone, [fax])
    body["logInfo"]["rcAccessToken"] = fake_clio.rc_token
    logged = await agent.log_messages(body)
    assert logged["successful"] is True, logged
    document = only(fake_clio.documents)
    assert document["parent"]["id"] == contact["id"] and document["parent"]["type"] == "Contact"
    assert document["name"].endswith(".pdf")
    assert fake_clio.uploads[document["latest_document_version"]["uuid"]] == pdf
    communication = only(fake_clio.communications)
    assert communication["subject"].startswith("Fax document sent from Maya Patel")
    assert (
        f"Fax uploaded to Clio: https://app.clio.com/nc/#/documents/{document['id']}/details"
        in (communication["body"])
    )


async def test_an_attachment_on_a_foreign_host_is_never_fetched(agent: Agent, fake_clio: FakeClio) -> None:
    """The URL comes from the request body: a host outside APPCONNECT_RC_MEDIA_HOSTS is not asked (SSRF);
    the log keeps the link instead, as when an upload fails."""
    contact, phone = person(fake_clio)
    allowed = fake_clio.add_media("image/jpeg", b"\xff\xd8\xff" + b"x" * 100)
    foreign = allowed.replace("127.0.0.1", "localhost")
    assert foreign != allowed
    attachment = {"type": "MmsAttachment", "uri": foreign, "contentType": "image/jpeg"}
    body = conversation_body(
        f"conv-{uuid.uuid4().hex[:8]}",
        str(contact["id"]),
        phone,
        [message_with(f"m-{uuid.uuid4().hex[:8]}", phone, attachment)],
    )
    body["logInfo"]["rcAccessToken"] = fake_clio.rc_token
    logged = await agent.log_messages(body)
    assert logged["successful"] is True, logged
    assert media_requests(fake_clio) == [] and fake_clio.documents == {}
    assert f"[Image link]: {foreign}" in only(fake_clio.communications)["body"]


async def test_without_a_ringcentral_token_the_image_is_linked(agent: Agent, fake_clio: FakeClio) -> None:
    contact, phone = person(fake_clio)
    uri = fake_clio.add_media("image/png", b"png")
    attachment = {"type": "MmsAttachment", "uri": uri, "contentType": "image/png"}
    body = conversation_body(
        f"conv-{uuid.uuid4().hex[:8]}",
        str(contact["id"]),
        phone,
        [message_with(f"m-{uuid.uuid4().hex[:8]}", phone, attachment)],
    )
    logged = await agent.log_messages(body)
    assert logged["successful"] is True, logged
    assert media_requests(fake_clio) == [] and fake_clio.documents == {}
    assert uri in only(fake_clio.communications)["body"]
