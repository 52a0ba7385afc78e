"""Matching RingCentral extensions to CRM users: email first, then name; one extension is one CRM user; the
admin's choices survive re-initialisation."""

from __future__ import annotations

from appconnect.connectors.sdk import CrmUser
from appconnect.flows.user_mapping import manual_choices, match_users
from appconnect.security.ringcentral_directory import RcExtension
from appconnect.store.user_mappings import MappedUser


def ext(ext_id: str, name: str, email: str = "") -> RcExtension:
    return RcExtension(id=ext_id, wire_id=int(ext_id), name=name, email=email, extension_number="101")


EXTENSIONS = [
    ext("1", "Sam Ortiz", "SAM@corp.example"),
    ext("2", "Kim Park", "kim@rc.example"),
    ext("3", "Kim Park", "other-kim@rc.example"),
]


def test_email_wins_over_name_and_case_does_not_matter() -> None:
    users = [
        CrmUser("a", "Samantha Ortiz-Reyes", "sam@corp.example"),
        CrmUser("b", "Kim Park", "kim@crm.example"),
    ]
    mapped = {
        m.crm_user_id: m.rc_extension_ids for m in match_users(users, EXTENSIONS, (), reinitialize=False)
    }
    assert mapped == {"a": ("1",), "b": ("2",)}


def test_an_extension_is_never_given_to_two_users() -> None:
    users = [CrmUser("b", "Kim Park", None), CrmUser("c", "Kim Park", None), CrmUser("d", "Kim Park", None)]
    mapped = {
        m.crm_user_id: m.rc_extension_ids for m in match_users(users, EXTENSIONS, (), reinitialize=False)
    }
    assert mapped == {"b": ("2",), "c": ("3",)}  # d has no extension left


def test_reinitialising_keeps_manual_choices_only() -> None:
    users = [CrmUser("a", "Sam Ortiz", None), CrmUser("b", "Kim Park", None)]
    previous = (
        MappedUser("a", "Sam Ortiz", "", ("3",), manual=True),
        MappedUser("b", "Kim Park", "", ("1",), manual=False),
    )
    kept = {m.crm_user_id: m for m in match_users(users, EXTENSIONS, previous, reinitialize=False)}
    assert kept["a"].rc_extension_ids == ("3",) and kept["b"].rc_extension_ids == ("1",)
    fresh = {m.crm_user_id: m for m in match_users(users, EXTENSIONS, previous, reinitialize=True)}
    assert fresh["a"].rc_extension_ids == ("3",) and fresh["a"].manual
    assert fresh["b"].rc_extension_ids == ("2",) and not fresh["b"].manual


def test_a_vanished_extension_drops_out_of_a_mapping() -> None:
    previous = (MappedUser("a", "Sam Ortiz", "", ("1", "99"), manual=True),)
    [mapped] = match_users([CrmUser("a", "Sam Ortiz", None)], EXTENSIONS, previous, reinitialize=False)
    assert mapped.rc_extension_ids == ("1",)


def test_manual_choices_take_the_references_shapes_and_refuse_others() -> None:
    assert manual_choices([{"crmUserId": 7, "rcExtensionId": "101"}]) == {"7": ("101",)}
    assert manual_choices([{"crmUserId": "7", "rcExtensionId": [101, "102", 101]}]) == {"7": ("101", "102")}
    assert manual_choices([{"crmUserId": "7", "rcExtensionId": []}]) == {"7": ()}
    assert manual_choices([{"rcExtensionId": ["1"]}]) is None
    assert manual_choices({"crmUserId": "7"}) is None
    assert manual_choices([{"crmUserId": True, "rcExtensionId": []}]) is None
