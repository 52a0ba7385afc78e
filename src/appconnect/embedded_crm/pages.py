"""Server-rendered HTML of the test CRM, so a person sees what the connector wrote. Everything is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1d2630;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.15rem; margin: 0; }
.muted { color: #5d6b78; font-size: .9rem; }
.contact { border: 1px solid #d5dce3; border-radius: 6px; padding: .8rem 1rem; margin: 1rem 0; }
.badge { display: inline-block; font-size: .75rem; padding: .05rem .45rem; border-radius: 4px;
         background: #e6eef7; color: #1f4e79; margin-left: .4rem; vertical-align: middle; }
ul.phones { list-style: none; padding: 0; margin: .4rem 0; }
ul.phones li { display: inline; margin-right: 1rem; }
.activity { border-left: 3px solid #9fb8d0; margin: .6rem 0 .6rem .4rem; padding: .2rem .8rem; }
.activity pre { background: #f6f8fa; padding: .5rem; white-space: pre-wrap; word-break: break-word;
                margin: .3rem 0; }
a { color: #1f4e79; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _activity_html(activity: dict[str, Any]) -> str:
    details = [_e(activity["kind"]), _e(activity.get("direction"))]
    if activity.get("duration_seconds") is not None:
        details.append(_e(_duration(activity["duration_seconds"])))
    if activity.get("started_at"):
        details.append("started " + _e(activity["started_at"]))
    disposition = ""
    if activity.get("disposition"):
        disposition = f'<div class="muted">Disposition: {_e(activity["disposition"])}</div>'
    body = f"<pre>{_e(activity['body'])}</pre>" if activity.get("body") else ""
    return (
        f'<div class="activity"><strong>{_e(activity["subject"])}</strong> '
        f'<span class="muted">#{_e(activity["id"])} · {" · ".join(d for d in details if d)}</span>'
        f"{disposition}{body}</div>"
    )


def _contact_html(contact: dict[str, Any], activities: list[dict[str, Any]], base_path: str) -> str:
    phones = "".join(
        f"<li>{_e(p['number'])} <span class='muted'>{_e(p.get('label'))}</span></li>"
        for p in contact["phones"]
    )
    extra = " · ".join(_e(v) for v in (contact.get("company"), contact.get("email")) if v)
    items = "".join(_activity_html(a) for a in activities) or '<p class="muted">No activities yet.</p>'
    return (
        f'<div class="contact"><h2><a href="{_e(base_path)}/contacts/{_e(contact["id"])}">'
        f'{_e(contact["name"])}</a><span class="badge">{_e(contact["type"])}</span></h2>'
        f'<div class="muted">#{_e(contact["id"])} · created {_e(contact["created_at"])}'
        f'{" · " + extra if extra else ""}</div><ul class="phones">{phones}</ul>{items}</div>'
    )


def _document(title: str, content: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{content}</body></html>"
    )


def render_index(
    contacts: list[dict[str, Any]], activities: dict[int, list[dict[str, Any]]], base_path: str
) -> str:
    """All contacts (newest first), each with its activities."""
    cards = "".join(_contact_html(c, activities.get(c["id"], []), base_path) for c in contacts)
    return _document(
        "Test CRM",
        f'<h1>Test CRM</h1><p class="muted">{len(contacts)} contact(s)</p>'
        + (cards or '<p class="muted">No contacts yet.</p>'),
    )


def render_contact(contact: dict[str, Any], activities: list[dict[str, Any]], base_path: str) -> str:
    """One contact's page: the target of the manifest's contactPageUrl."""
    back = f'<p><a href="{_e(base_path)}/">&larr; All contacts</a></p>'
    return _document(f"{contact['name']} - Test CRM", back + _contact_html(contact, activities, base_path))


def render_not_found(base_path: str) -> str:
    return _document(
        "Not found - Test CRM", f'<h1>Not found</h1><p><a href="{_e(base_path)}/">&larr; All contacts</a></p>'
    )
