"""Per-statement client CPU: the server's own PostgreSQL pool (store/sql.py) against asyncpg's pool.

    .venv/bin/python bench/pg_pool.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--n 3000]

Runs `SELECT $1::int` on one connection of each pool, alternating rounds, and prints the process CPU per
statement (acquire, statement, release). Measures what a pooled single statement costs the server, nothing else.
Then the price of a statement that leaves session state (`SET`), after which store/sql.py resets the connection
(one more round trip; no statement of the flow does this): CPU and wall time per statement, against the same
statement's cost with a plain `SELECT`.
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
    plain = sql("SELECT 'x' AS setting")
    dirty = sql("SET work_mem = '8MB'")
    costs: dict[str, tuple[list[float], list[float]]] = {"plain": ([], []), "SET + reset": ([], [])}
    for _ in range(args.rounds):
        for label, chosen in (("plain", plain), ("SET + reset", dirty)):
            start, wall = time.process_time(), time.perf_counter()
            for _ in range(args.n // 3):
                await ours.run(chosen)
            costs[label][0].append(1e6 * (time.process_time() - start) / (args.n // 3))
            costs[label][1].append(1e6 * (time.perf_counter() - wall) / (args.n // 3))
    await ours.close()
    await theirs.close()
    print(f"store/sql.py pool: {statistics.median(ours_us):.1f} us CPU per statement (rounds {ours_us})")
    print(f"asyncpg pool:      {statistics.median(theirs_us):.1f} us CPU per statement (rounds {theirs_us})")
    for label, (cpu, wall_us) in costs.items():
        print(
            f"store/sql.py, {label:<12} {statistics.median(cpu):.1f} us CPU, "
            f"{statistics.median(wall_us):.1f} us wall per statement"
        )


if __name__ == "__main__":
    asyncio.run(main())
