"""The newest migration, read from the migration files themselves (no Alembic, no SQLAlchemy)."""

from __future__ import annotations

import re
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(None|[\"']([^\"']+)[\"'])", re.MULTILINE)


def head_revision(versions: Path = VERSIONS) -> str | None:
    """The one revision no other migration builds on; None when that is not plain (branches, merges)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revision = _REVISION.search(text)
        if revision is None:
            continue
        down = _DOWN_REVISION.search(text)
        if down is None:
            return None  # a tuple (merge) or something else this reader does not follow
        revisions.add(revision.group(1))
        if down.group(2):
            parents.add(down.group(2))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
