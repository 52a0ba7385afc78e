"""Mutation check of the trust-critical code: are the tests that should catch a plausible bug catching it?

Each mutant below is one small textual change a reviewer could imagine slipping through (a dropped tenant
condition, a takeover without its compare-and-set, a window off by its edge, a write retried after it was sent,
a revocation check skipped, a retrier that forgets a kept log, a limit off by one). For each, this script copies
`src/` into a temporary folder, applies the change there (the working tree is never touched), runs only the tests
named for it with that copy first on `PYTHONPATH`, and prints caught or missed; at the end, the share caught.

Before anything runs, every mutant's original text must occur exactly once in its file: when the code moves, the
list fails loudly instead of silently testing nothing. Add a mutant with each new guarantee.

    python bench/mutants.py                 # all mutants
    python bench/mutants.py -k settle       # those whose name contains "settle"
    python bench/mutants.py --list          # names, files and tests, nothing run
    python bench/mutants.py --baseline      # first check the named tests pass on the unmodified code
    python bench/mutants.py --show          # name the test that caught each mutant
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "src/appconnect"
#: a mutant's tests run at most this long; a hang counts as caught (it would fail CI), and is shown as such
TIMEOUT_SECONDS = 300

EDGES = "tests/api/test_guarantee_edges.py"
LIMITS = "tests/api/test_stored_field_limits.py"
ISOLATION = "tests/api/test_log_isolation.py"
RECOVERY = "tests/api/test_log_recovery.py"
OUTBOX = "tests/store/test_outbox_claims.py"
HTTP_RETRIES = "tests/connectors/test_http_retries.py"
REVOCATION = "tests/security/test_session_revocation.py"
CONCURRENCY = "tests/api/test_concurrency.py"


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    #: the file, relative to src/appconnect
    path: str
    original: str
    replacement: str
    #: test files (or node ids) that should catch it
    tests: tuple[str, ...]
    #: a pytest -k expression that keeps the run short
    keyword: str = ""


MUTANTS: tuple[Mutant, ...] = (
    # --- claims and takeovers: the compare-and-set ------------------------------------------------------------
    Mutant(
        "takeover of a parked row without its compare-and-set",
        "store/call_logs.py",
        'payload = COALESCE(?, payload) WHERE pk = ? AND status = ?"""',
        'payload = COALESCE(?, payload) WHERE pk = ? AND ? IS NOT NULL"""',
        (EDGES,),
        "takeovers_of_one_parked_row or (racing and sqlite)",
    ),
    Mutant(
        "takeover of an abandoned reservation without the stale condition",
        "store/call_logs.py",
        'WHERE pk = ? AND status = \'pending\' AND updated_at < ?"""',
        'WHERE pk = ? AND status = \'pending\' AND ? IS NOT NULL"""',
        (EDGES,),
        "abandoned_reservation and sqlite",
    ),
    Mutant(
        "stale cut-off computed into the future",
        "store/call_logs.py",
        "        if row.status == PENDING:\n            stale_before = self._db.stamp(now - timedelta(",
        "        if row.status == PENDING:\n            stale_before = self._db.stamp(now + timedelta(",
        (EDGES,),
        "abandoned_reservation and sqlite",
    ),
    Mutant(
        "an abandoned reservation taken over without looking in the CRM first",
        "store/call_logs.py",
        "must_check=row.status in (PENDING, UNKNOWN),",
        "must_check=row.status == UNKNOWN,",
        (EDGES,),
        "abandoned_reservation and sqlite",
    ),
    Mutant(
        "an unanswered create forgets when its answer went missing (no settle window)",
        "store/call_logs.py",
        "unanswered_at=row.updated_at if row.status == UNKNOWN else None,",
        "unanswered_at=None,",
        (EDGES,),
        "call_log_retried_inside_the_settle_window and sqlite",
    ),
    Mutant(
        "the retrier takes rows before their backoff is over",
        "store/call_logs.py",
        "(status IN ('queued', 'unknown') AND next_attempt_at <= ?)",
        "(status IN ('queued', 'unknown') AND (next_attempt_at <= ? OR next_attempt_at IS NULL))",
        (EDGES,),
        "(backoff or last_attempt) and sqlite",
    ),
    Mutant(
        "outbox claim without its compare-and-set",
        "store/message_logs.py",
        "\"UPDATE message_outbox SET status = 'sending', updated_at = ? WHERE pk = ? AND status = 'queued'\"",
        "\"UPDATE message_outbox SET status = 'sending', updated_at = ? WHERE pk = ?\"",
        (OUTBOX,),
        "sqlite",
    ),
    Mutant(
        "outbox takeover of an entry being sent without the stale condition",
        "store/message_logs.py",
        "WHERE pk = ? AND status = 'sending' AND updated_at < ?\"",
        "WHERE pk = ? AND status = 'sending' AND ? IS NOT NULL\"",
        (OUTBOX,),
        "sqlite",
    ),
    # --- tenant scope -----------------------------------------------------------------------------------------
    Mutant(
        "call-log lookup without the tenant scope",
        "store/call_logs.py",
        "FROM call_logs WHERE scope = ? AND session_id IN ({placeholders})",
        "FROM call_logs WHERE ? IS NOT NULL AND session_id IN ({placeholders})",
        (ISOLATION,),
        "sqlite and (call_log or distinct_scopes)",
    ),
    Mutant(
        "call-log reservation blocked by another tenant's session",
        "store/call_logs.py",
        "WHERE NOT EXISTS (SELECT 1 FROM call_logs WHERE scope = {scope} AND session_id = ?{lookup})",
        "WHERE NOT EXISTS (SELECT 1 FROM call_logs WHERE {scope} IS NOT NULL AND session_id = ?{lookup})",
        (ISOLATION,),
        "sqlite and call_log",
    ),
    Mutant(
        "message ids looked up across tenants",
        "store/message_logs.py",
        "SELECT id FROM message_logs WHERE scope = ? AND status = ? AND id IN",
        "SELECT id FROM message_logs WHERE ? IS NOT NULL AND status = ? AND id IN",
        (ISOLATION,),
        "sqlite and message_log",
    ),
    Mutant(
        "a conversation's activity found in another tenant",
        "store/message_logs.py",
        '"""SELECT third_party_log_id FROM message_logs WHERE scope = ? AND conversation_log_id = ?',
        '"""SELECT third_party_log_id FROM message_logs WHERE ? IS NOT NULL AND conversation_log_id = ?',
        (ISOLATION,),
        "sqlite and message_log",
    ),
    Mutant(
        "contact lookup cache read across tenants",
        "store/cache.py",
        '"SELECT data, updated_at FROM account_data WHERE account_id = ? AND platform = ? AND data_key = ?"',
        '"SELECT data, updated_at FROM account_data WHERE ? IS NOT NULL AND platform = ? AND data_key = ?"',
        (ISOLATION,),
        "spoofed and sqlite",
    ),
    Mutant(
        "a placeholder contact's number claimed again inside the dedupe window",
        "store/cache.py",
        "    WHERE created_contacts.created_at < ?\n    RETURNING phone_number",
        "    WHERE created_contacts.created_at > ?\n    RETURNING phone_number",
        (CONCURRENCY,),
        "placeholder and sqlite",
    ),
    # --- settle and stale windows -----------------------------------------------------------------------------
    Mutant(
        "settle window of 0",
        "flows/delivery.py",
        "    return settings.crm_read_timeout + settings.crm_connect_timeout\n",
        "    return 0.0\n",
        (EDGES,),
        "settle and sqlite",
    ),
    Mutant(
        "settle window compared the wrong way (call logs)",
        "flows/call_logs.py",
        "        if datetime.now(UTC) < settled_at:",
        "        if datetime.now(UTC) > settled_at:",
        (EDGES,),
        "call_log and settle and sqlite",
    ),
    Mutant(
        "settle window compared the wrong way (message logs)",
        "flows/message_logs.py",
        "if log_id is None and unanswered_at is not None and datetime.now(UTC) < unanswered_at + settle:",
        "if log_id is None and unanswered_at is not None and datetime.now(UTC) > unanswered_at + settle:",
        (EDGES,),
        "message_log and settle and sqlite",
    ),
    Mutant(
        "settle window compared the wrong way (placeholder contacts)",
        "flows/contacts.py",
        "if landed is None and datetime.now(UTC) < settled_at:",
        "if landed is None and datetime.now(UTC) > settled_at:",
        (EDGES,),
        "contact and settle and sqlite",
    ),
    Mutant(
        "configured stale window ignored",
        "flows/delivery.py",
        "    if settings.log_stale_seconds > 0:\n        return settings.log_stale_seconds",
        "    if settings.log_stale_seconds > 0:\n        return settings.crm_read_timeout",
        (EDGES,),
        "(stale or settle_window_is) and sqlite",
    ),
    # --- retrier backoff and attempts -------------------------------------------------------------------------
    Mutant(
        "backoff does not double",
        "flows/delivery.py",
        "settings.log_retry_base_seconds * 2 ** max(attempts - 1, 0)",
        "settings.log_retry_base_seconds * 2 ** max(attempts - 2, 0)",
        (EDGES,),
        "(backoff or schedule) and sqlite",
    ),
    Mutant(
        "one retrier attempt too many",
        "flows/delivery.py",
        "    if attempts >= settings.log_retry_max_attempts:",
        "    if attempts > settings.log_retry_max_attempts:",
        (EDGES,),
        "(schedule or last_attempt) and sqlite",
    ),
    Mutant(
        "a 5xx treated as refused for good (the kept log is dropped)",
        "flows/delivery.py",
        "return exc.status is not None and 400 <= exc.status < 500 and",
        "return exc.status is not None and 400 <= exc.status < 600 and",
        (EDGES,),
        "(backoff or last_attempt) and sqlite",
    ),
    # --- the retrier and logged-out users ---------------------------------------------------------------------
    Mutant(
        "the retrier deletes a logged-out user's kept call log",
        "flows/log_retrier.py",
        "await store.park(pk, status=FAILED, payload=None, attempts=claim.attempts + 1, next_attempt_at=None)",
        "await store.release(pk)",
        (EDGES,),
        "logged_out and sqlite",
    ),
    Mutant(
        "the retrier deletes a logged-out user's kept message log",
        "flows/log_retrier.py",
        "        await store.retry_later(entry.pk, attempts=attempts, next_attempt_at=None)\n        return 0\n    try:",
        "        await store.delivered(entry.pk)\n        return 0\n    try:",
        (EDGES,),
        "logged_out and sqlite",
    ),
    Mutant(
        "the retrier sends a logged-out user's log",
        "flows/log_retrier.py",
        "    if user is None or not user.access_token or body is None:\n        # logged out",
        "    if user is None or body is None:\n        # logged out",
        (EDGES,),
        "logged_out and sqlite",
    ),
    Mutant(
        "a message outbox entry out of attempts stays queued",
        "store/message_logs.py",
        'status = "queued" if next_attempt_at is not None else "failed"',
        'status = "queued"',
        (EDGES,),
        "logged_out and message and sqlite",
    ),
    # --- writes whose outcome is unknown ----------------------------------------------------------------------
    Mutant(
        "a write answered 500 treated as not done",
        "outbound/client.py",
        "UNKNOWN_OUTCOME_STATUSES = frozenset({500, 502, 504})",
        "UNKNOWN_OUTCOME_STATUSES = frozenset({502, 504})",
        (EDGES,),
        "answering_500 and sqlite",
    ),
    Mutant(
        "a write sent without an answer treated as not done",
        "outbound/client.py",
        "failure = CrmHttpError(None, method=method, url=safe_url, outcome_unknown=not repeatable)",
        "failure = CrmHttpError(None, method=method, url=safe_url, outcome_unknown=False)",
        (EDGES,),
        "contact and settle and sqlite",
    ),
    Mutant(
        "a write sent again after no answer",
        "outbound/client.py",
        "outcome_unknown=not repeatable)\n        retryable = repeatable",
        "outcome_unknown=not repeatable)\n        retryable = True",
        (HTTP_RETRIES,),
        "write",
    ),
    Mutant(
        "a write sent again after a 502",
        "outbound/client.py",
        "retryable = repeatable and status in RETRYABLE_READ_STATUSES",
        "retryable = status in RETRYABLE_READ_STATUSES",
        (HTTP_RETRIES,),
        "write or 5xx",
    ),
    Mutant(
        "POST counted as a safe method",
        "outbound/client.py",
        'SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})',
        'SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST"})',
        (HTTP_RETRIES,),
        "write",
    ),
    Mutant(
        "a create answered 500 not checked for a message log",
        "flows/message_logs.py",
        "        if _may_have_landed(exc):\n            # the CRM itself answered",
        "        if outcome_unknown(exc):\n            # the CRM itself answered",
        (EDGES,),
        "message_log and 500 and sqlite",
    ),
    Mutant(
        "a connector without find_call_log creates an unanswered log again",
        "flows/call_logs.py",
        'if claim.must_check or (claim.retried and implements(connector, "find_call_log")):',
        'if (claim.must_check or claim.retried) and implements(connector, "find_call_log"):',
        (EDGES,),
        "without_find_call_log and sqlite",
    ),
    Mutant(
        "a 5xx create to a connector without find_call_log kept as safe to send again",
        "flows/call_logs.py",
        'landed = exc.outcome_unknown and not implements(connector, "find_call_log")',
        "landed = False",
        (EDGES,),
        "without_find_call_log and sqlite",
    ),
    Mutant(
        "the placeholder contact's earlier create not adopted",
        "flows/contacts.py",
        "adopted = _same_contact(at_crm, new.name, new.contact_type)",
        "adopted = None",
        (EDGES,),
        "contact and (500 or settle) and sqlite",
    ),
    Mutant(
        "a contact create answered 5xx forgotten instead of recorded",
        "flows/contacts.py",
        "            if exc.outcome_unknown:  # recorded again",
        "            if exc.status is None:  # recorded again",
        (EDGES,),
        "contact and 500 and sqlite",
    ),
    Mutant(
        "a doubtful append sent again to a connector without idempotent appends",
        "flows/message_logs.py",
        "if resent and not connector.idempotent_message_append:",
        "if resent and connector.idempotent_message_append is None:",
        (RECOVERY,),
        "idempotent_appends and sqlite",
    ),
    # --- revocation -------------------------------------------------------------------------------------------
    Mutant(
        "a JWT issued before the logout still accepted",
        "flows/common.py",
        "return round(claims.issued_at * 1000) >= valid_after_ms",
        "return True",
        (REVOCATION,),
        "sqlite",
    ),
    Mutant(
        "the first write of a request admitted for a revoked JWT",
        "flows/common.py",
        "    if user is None or not session_is_current(user, claims) or not user.access_token:\n"
        "        if written is not None",
        "    if user is None or not user.access_token:\n        if written is not None",
        (EDGES,),
        "revoked and sqlite",
    ),
    # --- input limits -----------------------------------------------------------------------------------------
    Mutant(
        "ids one character longer than their column",
        "flows/requests.py",
        "ID_CHARS = 255\n",
        "ID_CHARS = 256\n",
        (LIMITS,),
        "limits_are_the_columns or (sqlite and (sessionId or rcAccountId or hashedExtensionId))",
    ),
    Mutant(
        "session id check off by one",
        "flows/requests.py",
        "    if len(text) > ID_CHARS:",
        "    if len(text) > ID_CHARS + 1:",
        (LIMITS,),
        "sqlite and sessionId",
    ),
    Mutant(
        "bounded ids and numbers off by one",
        "flows/requests.py",
        "        if len(str(value)) > limit:",
        "        if len(str(value)) > limit + 1:",
        (LIMITS,),
        "sqlite and (extensionNumber or contactId or messages)",
    ),
    Mutant(
        "bounded ids refuse their own limit",
        "flows/requests.py",
        "        if len(str(value)) > limit:",
        "        if len(str(value)) >= limit:",
        (LIMITS,),
        "sqlite and (extensionNumber or contactId or messages)",
    ),
    Mutant(
        "extension numbers one character longer than their column",
        "flows/requests.py",
        "EXTENSION_CHARS = 64\n",
        "EXTENSION_CHARS = 65\n",
        (LIMITS,),
        "sqlite and extensionNumber",
    ),
    Mutant(
        "phone numbers one character longer than their column",
        "flows/requests.py",
        "PHONE_CHARS = 32\n",
        "PHONE_CHARS = 33\n",
        (LIMITS,),
        "sqlite and phone",
    ),
    Mutant(
        "login identity headers one character longer than their column",
        "flows/login.py",
        "    if value is not None and len(value) > _STORED_ID_CHARS:",
        "    if value is not None and len(value) > _STORED_ID_CHARS + 1:",
        (LIMITS,),
        "sqlite and (headers or rcAccountId)",
    ),
)


def check_originals(mutants: tuple[Mutant, ...]) -> list[str]:
    """Every original must occur exactly once in its file: the problems, empty when the list is current."""
    problems = []
    for mutant in mutants:
        path = ROOT / PACKAGE / mutant.path
        if not path.is_file():
            problems.append(f"{mutant.name}: {mutant.path} does not exist")
            continue
        count = path.read_text().count(mutant.original)
        if count != 1:
            problems.append(f"{mutant.name}: its original text occurs {count} times in {mutant.path}")
        if mutant.original == mutant.replacement:
            problems.append(f"{mutant.name}: the replacement changes nothing")
    return problems


def run_tests(source: Path, mutant: Mutant) -> tuple[int | None, float, list[str]]:
    """pytest on the mutant's tests with `source` (a copy of src/) first on the path: (exit status, seconds,
    the tests that failed); the status is None when the run timed out."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(ROOT)])}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
    if mutant.keyword:
        command += ["-k", mutant.keyword]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started, []
    failed = [
        line.split(" - ")[0].removeprefix("FAILED ").removeprefix("ERROR ")
        for line in done.stdout.decode(errors="replace").splitlines()
        if line.startswith(("FAILED tests/", "ERROR tests/"))
    ]
    return done.returncode, time.monotonic() - started, failed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-k", dest="only", default="", help="run only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--baseline", action="store_true", help="first run every mutant's tests unmodified")
    parser.add_argument("--show", action="store_true", help="name the test that caught each mutant")
    args = parser.parse_args()
    mutants = tuple(m for m in MUTANTS if args.only.lower() in m.name.lower())

    problems = check_originals(MUTANTS)
    if problems:
        print("the mutant list no longer matches the code:", *problems, sep="\n  ", file=sys.stderr)
        return 2
    if args.list:
        for mutant in mutants:
            print(f"{mutant.name}\n    {mutant.path}; {' '.join(mutant.tests)} -k {mutant.keyword!r}")
        print(f"{len(mutants)} mutants")
        return 0

    with tempfile.TemporaryDirectory(prefix="appconnect-mutants-") as folder:
        source = Path(folder) / "src"
        shutil.copytree(ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        imported = subprocess.run(
            [sys.executable, "-c", "import appconnect; print(appconnect.__file__)"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(ROOT)])},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not imported.startswith(str(source)):
            print(f"the tests would import appconnect from {imported}, not the copy", file=sys.stderr)
            return 2
        if args.baseline:
            failing = []
            for mutant in mutants:
                status, _seconds, _failed = run_tests(source, mutant)
                if status != 0:
                    failing.append(mutant.name)
            if failing:
                print("the tests fail without any mutant:", *failing, sep="\n  ", file=sys.stderr)
                return 2
            print(f"baseline: the tests of all {len(mutants)} mutants pass on the unmodified code")
        caught = 0
        for index, mutant in enumerate(mutants, 1):
            target = source / "appconnect" / mutant.path
            original = target.read_text()
            target.write_text(original.replace(mutant.original, mutant.replacement, 1))
            try:
                status, seconds, failed = run_tests(source, mutant)
            finally:
                target.write_text(original)
            if status is None:
                verdict, hit = "caught (timeout)", True
            elif status == 1:
                verdict, hit = "caught", True
            elif status == 0:
                verdict, hit = "MISSED", False
            else:  # 2-5: interrupted, internal error, usage error, nothing collected
                verdict, hit = f"MISSED (pytest exit {status}: the run itself failed)", False
            caught += hit
            print(f"{index:2}/{len(mutants)} {verdict:8} {seconds:5.1f} s  {mutant.name}", flush=True)
            if args.show:
                for test in failed:
                    print(f"       failed: {test}")
    share = caught / len(mutants) if mutants else 1.0
    print(f"caught {caught} of {len(mutants)} mutants ({share:.0%})")
    return 0 if caught == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
