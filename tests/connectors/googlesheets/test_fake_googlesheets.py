"""FakeGoogleSheets keeps Google's rules: these tests talk to it over HTTP as any client would."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.connectors.googlesheets.fake_googlesheets import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeGoogleSheets,
    column_index,
    column_letters,
    user_entered,
)


@pytest.fixture
def api(fake_google: FakeGoogleSheets) -> Iterator[httpx.Client]:
    token = fake_google.issue_tokens().access_token
    with httpx.Client(base_url=fake_google.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def _book(fake: FakeGoogleSheets) -> str:
    return fake.add_spreadsheet(fake.login_sub, "Book", {"Call Logs": [["ID", "Notes"]], "Sheet1": []})


def test_column_letters_round_trip_past_z() -> None:
    for index in (0, 25, 26, 27, 51, 52, 701, 702, 18_277):
        assert column_index(column_letters(index)) == index
    assert [column_letters(i) for i in (25, 26, 701, 18_277)] == ["Z", "AA", "ZZ", "ZZZ"]


def test_user_entered_parses_as_a_user_typing() -> None:
    assert user_entered("+14155550100") == 14155550100
    assert user_entered("'+14155550100") == "+14155550100"
    assert user_entered("true") is True
    assert user_entered("Maya") == "Maya"


def test_writes_need_a_value_input_option(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    sid = _book(fake_google)
    path = f"/v4/spreadsheets/{sid}/values:batchUpdate"
    refused = api.post(path, json={"data": [{"range": "'Call Logs'!B2", "values": [["x"]]}]})
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    bad = api.post(path, json={"valueInputOption": "INPUT_VALUE_OPTION_UNSPECIFIED", "data": []})
    assert bad.status_code == 400
    ok = api.post(
        path, json={"valueInputOption": "RAW", "data": [{"range": "'Call Logs'!AB2", "values": [[1]]}]}
    )
    assert ok.status_code == 200 and ok.json()["totalUpdatedCells"] == 1
    assert fake_google.raw_cells(sid, "Call Logs")[1][27] == 1


def test_answers_drop_trailing_empty_cells_and_rows(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    sid = fake_google.add_spreadsheet(
        fake_google.login_sub, "Book", {"T": [["a", "", "c", "", ""], ["", "", ""], ["d"], [None, None]]}
    )
    answer = api.get(f"/v4/spreadsheets/{sid}/values/T!A:ZZZ").json()
    assert answer["values"] == [["a", "", "c"], [], ["d"]]
    empty = fake_google.add_spreadsheet(fake_google.login_sub, "Empty", {"T": []})
    assert "values" not in api.get(f"/v4/spreadsheets/{empty}/values/T").json()


def test_a_range_naming_no_sheet_cannot_be_parsed(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    sid = _book(fake_google)
    answer = api.get(f"/v4/spreadsheets/{sid}/values/%27Contacts%27!A:ZZZ")
    assert answer.status_code == 400 and "Unable to parse range" in answer.json()["error"]["message"]
    assert api.get(f"/v4/spreadsheets/{sid}/values/%27Call%20Logs%27!A1:AAAA1").status_code == 400


def test_append_goes_after_the_last_row(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    sid = _book(fake_google)
    answer = api.post(
        f"/v4/spreadsheets/{sid}/values/%27Call%20Logs%27!A1:append",
        params={"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
        json={"values": [["L1", "+14155550100"]]},
    )
    assert answer.status_code == 200
    assert answer.json()["updates"]["updatedRange"] == "'Call Logs'!A2:B2"
    assert fake_google.rows(sid, "Call Logs") == [["ID", "Notes"], ["L1", "+14155550100"]]


def test_a_spreadsheet_is_its_owners_only(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    other = fake_google.add_user("Someone", "someone@example.test")
    sid = fake_google.add_spreadsheet(other, "Theirs", {"T": [["x"]]})
    assert api.get(f"/v4/spreadsheets/{sid}/values/T").status_code == 403
    assert api.get("/drive/v3/files", params={"q": "name = 'Theirs'"}).json() == {"files": []}


def test_add_sheet_refuses_a_title_taken(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    sid = _book(fake_google)
    body = {"requests": [{"addSheet": {"properties": {"title": "Call Logs"}}}]}
    answer = api.post(f"/v4/spreadsheets/{sid}:batchUpdate", json=body)
    assert answer.status_code == 400 and "already exists" in answer.json()["error"]["message"]


def test_drive_search_is_strict_about_its_query(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    assert api.get("/drive/v3/files", params={"q": "name contains 'x'"}).status_code == 400
    sid = _book(fake_google)
    listed = api.get(
        "/drive/v3/files", params={"q": "name = 'Book' and trashed = false", "orderBy": "createdTime"}
    )
    assert [f["id"] for f in listed.json()["files"]] == [sid]


def test_the_write_quota_is_sixty_a_minute_per_user(fake_google: FakeGoogleSheets, api: httpx.Client) -> None:
    sid = _book(fake_google)
    body = {"valueInputOption": "RAW", "data": [{"range": "'Call Logs'!B2", "values": [["x"]]}]}
    for _ in range(60):
        assert api.post(f"/v4/spreadsheets/{sid}/values:batchUpdate", json=body).status_code == 200
    refused = api.post(f"/v4/spreadsheets/{sid}/values:batchUpdate", json=body)
    assert refused.status_code == 429 and refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert api.get(f"/v4/spreadsheets/{sid}/values/Sheet1").status_code == 200  # reads count apart


def test_a_refresh_answer_holds_no_new_refresh_token(fake_google: FakeGoogleSheets) -> None:
    pair = fake_google.issue_tokens()
    with httpx.Client(base_url=fake_google.base_url) as client:
        answer = client.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": pair.refresh_token,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        ).json()
        assert answer["access_token"] and "refresh_token" not in answer
        wrong = client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token, "client_id": "x"},
        )
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
