"""Everything a flow needs, built once per process: stores, locks, ciphers, connectors, the HTTP client."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from appconnect.connectors.registry import ConnectorRegistry
from appconnect.connectors.sdk import Connector, UserView
from appconnect.outbound.client import CrmTransport, RetryPolicy, build_transport_client
from appconnect.outbound.limits import (
    AccountLimiter,
    Batched,
    Bucket,
    LimitBook,
    RateLimiterBackend,
    RateLimitOverrides,
)
from appconnect.outbound.types import LimitRule, LimitScope
from appconnect.security.crypto import TokenCipher
from appconnect.security.jwt import SessionTokens
from appconnect.security.keys import ServerKeys, load_keys
from appconnect.security.ringcentral import RingCentralIdentities
from appconnect.settings import Settings
from appconnect.store.admin import AdminRingCentralStore, AdminSettingsStore, CallNoteCache
from appconnect.store.cache import AccountCache
from appconnect.store.call_logs import CallLogStore
from appconnect.store.locks import DatabaseSharedLock, LockManager, RedisSharedLock
from appconnect.store.managed_auth import ManagedAuthStore
from appconnect.store.message_logs import MessageLogStore
from appconnect.store.rate_limits import DatabaseRateLimiter, RedisRateLimiter
from appconnect.store.sql import Database, PostgresDatabase, PostgresOptions, open_database
from appconnect.store.urls import is_sqlite, sqlite_file
from appconnect.store.user_cache import ListenChanges, SharedMemoryChanges, UserCache, changes_file
from appconnect.store.user_mappings import UserMappingStore
from appconnect.store.users import UserStore

#: no `APPCONNECT_CRM_RATE_LIMIT`: every connector follows its CRM
_FOLLOW_EVERY_CRM = RateLimitOverrides()
#: session limiters kept for reuse, per process
_MOST_LIMITERS = 1024


@dataclass(slots=True)
class Services:
    settings: Settings
    keys: ServerKeys
    #: every statement the server runs (store/sql.py)
    db: Database
    http: CrmTransport
    registry: ConnectorRegistry
    tokens: SessionTokens
    users: UserStore
    call_logs: CallLogStore
    message_logs: MessageLogStore
    cache: AccountCache
    locks: LockManager
    admin_settings: AdminSettingsStore
    call_notes: CallNoteCache
    #: an admin's RingCentral tokens and server-side logging settings (flows/admin_ringcentral.py)
    admin_ringcentral: AdminRingCentralStore
    managed_auth: ManagedAuthStore
    user_mappings: UserMappingStore
    redis: Any = None
    #: RingCentral identities of access tokens, kept briefly (security/ringcentral.py)
    rc_identities: RingCentralIdentities = field(default_factory=RingCentralIdentities)
    rate_limiter: RateLimiterBackend | None = None
    rate_limit_overrides: RateLimitOverrides | None = None
    #: what the CRMs' answers said about their limits, in this process
    rate_limit_book: LimitBook = field(default_factory=LimitBook)
    user_cache: UserCache | None = None
    #: session limiters by connector, operator's limit and scope keys (see `account_limiter`)
    _limiters: dict[tuple[object, ...], AccountLimiter] = field(default_factory=dict)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy.from_settings(self.settings)

    def account_limiter(self, connector: Connector, user: UserView) -> AccountLimiter | None:
        """The limits the calls of `user` count against: the rules the connector declares for this user's
        token, CRM user and company, plus the operator's fixed limit when the setting gives one.

        Sessions whose scope keys are the same (the same user's requests; a company's users for its company
        rules) share one limiter: it holds only the rules, the keys and what it matched, never a count (the
        counts are in the book), so a request pays for its scope keys and a dictionary read."""
        if self.rate_limiter is None:
            return None
        on, fixed = (self.rate_limit_overrides or _FOLLOW_EVERY_CRM).entry_for(connector.platform)
        if not on:
            return None
        rules = connector.rate_limits
        # the operator's limit counts per the scope of the connector's main rule (company when none)
        main = min(rules, key=lambda r: (bool(r.paths), r.per_seconds), default=None) if fixed else None
        fixed_scope: LimitScope = main.scope if main is not None else "company"
        scope_keys: dict[str, str] = {"token": connector.limit_scope_key(user, "token")}  # the fallback's
        for scope in (*(rule.scope for rule in rules), *((fixed_scope,) if fixed is not None else ())):
            if scope not in scope_keys:
                scope_keys[scope] = connector.limit_scope_key(user, scope)
        memo = (connector, fixed, *scope_keys.values())
        limiter = self._limiters.get(memo)
        if limiter is not None:
            return limiter
        platform = connector.platform
        buckets = [Bucket(rule, f"{platform}:{rule.name}:{scope_keys[rule.scope]}") for rule in rules]
        if fixed is not None:
            rule = LimitRule("setting", fixed_scope, per_seconds=fixed.per_seconds, requests=fixed.requests)
            buckets.append(Bucket(rule, f"{platform}:setting:{scope_keys[fixed_scope]}", fixed))
        limiter = AccountLimiter(
            self.rate_limiter,
            self.rate_limit_book,
            tuple(buckets),
            f"{platform}:crm:{scope_keys['token']}",
            self.settings.crm_rate_limit_max_wait_seconds,
        )
        if len(self._limiters) >= _MOST_LIMITERS:
            self._limiters.clear()  # a bound, not a policy: rebuilding one costs microseconds
        self._limiters[memo] = limiter
        return limiter

    async def close(self) -> None:
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.user_cache is not None:
            await self.user_cache.changes.close()
        await self.db.close()


def connector_environment(settings: Settings) -> dict[str, str]:
    """Connector settings (`<PLATFORM>_<KEY>`) from the environment and `.env`; the embedded CRM's URL."""
    from dotenv import dotenv_values

    env = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    env.update(os.environ)
    env.setdefault("TESTCRM_BASE_URL", f"{settings.server_url()}/testcrm/api/v1")
    return env


def testcrm_connector_offered(settings: Settings, env: dict[str, str]) -> bool:
    """The testcrm platform is offered only when a test CRM answers: the embedded one, or an external one.

    An explicit `TESTCRM_BASE_URL` naming this server's own `/testcrm` does not count when the embedded CRM
    is off: nothing is served there, and logins must not reach a CRM that is not meant to be on.
    """
    if settings.testcrm_enabled():
        return True
    own = f"{settings.server_url()}/testcrm/api/v1"
    return env.get("TESTCRM_BASE_URL", own).rstrip("/") != own


def _discover(settings: Settings) -> ConnectorRegistry:
    env = connector_environment(settings)
    excluded = () if testcrm_connector_offered(settings, env) else ("testcrm",)
    return ConnectorRegistry.discover(env, exclude=excluded)


def build_services(settings: Settings, registry: ConnectorRegistry | None = None) -> Services:
    keys = load_keys(settings)
    connections = settings.database_connections_per_worker()
    if _user_cache_on(settings) and not is_sqlite(settings.database_url):
        connections = max(1, connections - 1)  # the user cache's LISTEN connection
    db = open_database(
        settings.database_url,
        max_connections=connections,
        acquire_timeout=settings.database_pool_timeout,
        keep_open=min(settings.database_pool_size, connections),
        options=postgres_options(settings),
    )
    redis_client = None
    if settings.redis_url:
        import redis.asyncio as redis_asyncio

        redis_client = redis_asyncio.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        shared: DatabaseSharedLock | RedisSharedLock = RedisSharedLock(redis_client)
        limiter: RateLimiterBackend = RedisRateLimiter(redis_client)
    else:
        shared = DatabaseSharedLock(db)
        limiter = DatabaseRateLimiter(db)
    cipher = TokenCipher(keys.encryption_keys)
    user_cache = _user_cache(settings, db)
    return Services(
        settings=settings,
        keys=keys,
        db=db,
        http=build_transport_client(
            connect_timeout=settings.crm_connect_timeout,
            read_timeout=settings.crm_read_timeout,
            call_deadline=settings.crm_call_deadline_seconds,
            max_connections_per_host=settings.crm_max_connections_per_host,
            keepalive_seconds=settings.crm_keepalive_seconds,
        ),
        registry=registry or _discover(settings),
        tokens=SessionTokens(keys.jwt_secret),
        users=UserStore(cipher, db, user_cache),
        call_logs=CallLogStore(cipher, db),
        message_logs=MessageLogStore(cipher, db),
        cache=AccountCache(db),
        locks=LockManager(shared, wait_seconds=settings.lock_wait_seconds),
        redis=redis_client,
        rate_limiter=Batched(limiter),
        rate_limit_overrides=RateLimitOverrides.parse(settings.crm_rate_limit),
        user_cache=user_cache,
        admin_settings=AdminSettingsStore(db),
        call_notes=CallNoteCache(cipher, db),
        admin_ringcentral=AdminRingCentralStore(cipher, db),
        managed_auth=ManagedAuthStore(cipher, db),
        user_mappings=UserMappingStore(db),
    )


def postgres_options(settings: Settings) -> PostgresOptions:
    """How the server's PostgreSQL connections connect and how long they live, from the settings."""
    return PostgresOptions(
        application_name=settings.database_application_name,
        statement_timeout_ms=settings.database_statement_timeout_ms,
        statement_cache_size=settings.database_statement_cache_size,
        idle_seconds=settings.database_pool_idle_seconds,
        recycle_seconds=settings.database_pool_recycle_seconds,
    )


def _user_cache_on(settings: Settings) -> bool:
    if settings.user_cache is None:
        return is_sqlite(settings.database_url)
    return settings.user_cache


def _user_cache(settings: Settings, db: Database) -> UserCache | None:
    """SQLite: change counters in shared memory beside the database file; PostgreSQL: LISTEN/NOTIFY."""
    if not _user_cache_on(settings):
        return None
    if isinstance(db, PostgresDatabase):
        return UserCache(ListenChanges(db.dsn))
    path = sqlite_file(settings.database_url)
    if path is None:
        return None
    return UserCache(SharedMemoryChanges(changes_file(path)))
