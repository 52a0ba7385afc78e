#!/usr/bin/env python3
"""What the outbound client's depth check (`outbound/client.py` `read_json`) costs beside the parse it guards.

CRM-shaped answers (a contact search: records with phones, owner, organisation) of about 4 KB, 12 KB and 900 KB
are parsed with plain `orjson.loads` and with `read_json`, alternately, best of `--repeat` timeit runs each.

    .venv/bin/python bench/json_depth.py
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from appconnect.outbound.client import read_json


def _record(n: int) -> dict[str, Any]:
    return {
        "result_score": 0.9,
        "item": {
            "id": 1000 + n,
            "type": "person",
            "name": f"Person {n}",
            "phones": ["+14155550100", "+14155550101"],
            "emails": [f"p{n}@example.com"],
            "owner": {"id": 42},
            "organization": {"id": 7, "name": "Acme Corporation", "address": None},
            "custom_fields": [],
            "notes": [],
            "update_time": "2026-01-05 09:00:00",
        },
    }


def _best(parse: Callable[[bytes], Any], raw: bytes, number: int, repeat: int) -> float:
    """Seconds per parse, best of `repeat` runs of `number`."""
    return min(timeit.repeat(lambda: parse(raw), number=number, repeat=repeat)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for records, number in ((14, 20_000), (40, 5_000), (3_000, 50)):
        raw = orjson.dumps({"success": True, "data": {"items": [_record(n) for n in range(records)]}})
        brackets = raw.count(b"[") + raw.count(b"{")
        plain = _best(orjson.loads, raw, number, args.repeat)
        checked = _best(read_json, raw, number, args.repeat)
        print(
            f"{len(raw) / 1024:8.1f} KB, {brackets:6d} brackets: orjson.loads {plain * 1e6:9.1f} us, "
            f"read_json {checked * 1e6:9.1f} us (+{(checked - plain) * 1e6:.1f} us, "
            f"+{(checked / plain - 1) * 100:.0f}%)"
        )


if __name__ == "__main__":
    main()
