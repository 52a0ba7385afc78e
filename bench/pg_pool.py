"""Per-statement client CPU: the server's own PostgreSQL pool (store/sql.py) against asyncpg's pool.

    .venv/bin/python bench/pg_pool.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--n 3000]

Runs `SELECT $1::int` on one connection of each pool, alternating rounds, and prints the process CPU per
statement (acquire, statement, release). Measures what a pooled single statement costs the server, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg

from appconnect.store.sql import PostgresDatabase, sql


async def _no_reset(_conn: Any) -> None:
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=3000, help="statements per round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    ours = PostgresDatabase(args.dsn, max_size=4, acquire_timeout=5)
    theirs = await asyncpg.create_pool(args.dsn, min_size=0, max_size=4, reset=_no_reset)
    statement = sql("SELECT ?::int AS x")
    ours_us: list[float] = []
    theirs_us: list[float] = []
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.n):
            await ours.one(statement, 1)
        ours_us.append(1e6 * (time.process_time() - start) / args.n)
        start = time.process_time()
        for _ in range(args.n):
            conn = await theirs.acquire()
            try:
                await conn.fetchrow(statement.postgres, 1)
            finally:
                await theirs.release(conn)
        theirs_us.append(1e6 * (time.process_time() - start) / args.n)
    await ours.close()
    await theirs.close()
    print(f"store/sql.py pool: {statistics.median(ours_us):.1f} us CPU per statement (rounds {ours_us})")
    print(f"asyncpg pool:      {statistics.median(theirs_us):.1f} us CPU per statement (rounds {theirs_us})")


if __name__ == "__main__":
    asyncio.run(main())
