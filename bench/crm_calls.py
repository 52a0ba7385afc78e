"""CRM calls per lookup and per placeholder flow, for every connector, beside the reference connector's.

A CRM's quota is the customer's money: this prints, for each connector that states the reference's figures,
how many requests its CRM (the connector's fake, a real HTTP server) received for each step of the client's
placeholder flow. The figures come from the conformance suite's cost test
(`tests/connectors/conformance/test_conformance.py::test_crm_calls_per_lookup_and_flow_beside_the_reference`),
which also fails when a lookup hit, a contact create or a call log costs more than the reference's without a
stated reason; this script runs it on SQLite and prints one table.

    .venv/bin/python bench/crm_calls.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/connectors/conformance/test_conformance.py::test_crm_calls_per_lookup_and_flow_beside_the_reference"
_HEADER = re.compile(r"^(\w+): CRM requests per step")
_STEP = re.compile(r"^\s+(lookup_hit|lookup_miss|create_contact|create_call_log): (\d+) / (\S+)")
_FLOW = re.compile(r"^\s+placeholder flow \(miss, contact, call log\): (\d+) / (\S+)")
STEPS = ("lookup_hit", "lookup_miss", "create_contact", "create_call_log")


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-k", "sqlite", TEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    rows: dict[str, dict[str, str]] = {}
    platform = ""
    for line in run.stdout.splitlines():
        if header := _HEADER.match(line):
            platform = header.group(1)
            rows[platform] = {}
        elif (step := _STEP.match(line)) and platform:
            rows[platform][step.group(1)] = f"{step.group(2)} / {step.group(3)}"
        elif (flow := _FLOW.match(line)) and platform:
            rows[platform]["flow"] = f"{flow.group(1)} / {flow.group(2)}"
    if not rows:
        print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
        return 2
    print("CRM requests, this server / the reference connector (first lookup of an account already made)\n")
    print("| connector | " + " | ".join(STEPS) + " | placeholder flow (miss + create + call log) |")
    print("| --- " * (len(STEPS) + 2) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row.get(s, "-") for s in STEPS) + f" | {row.get('flow', '-')} |")
    print("\n" + (run.stdout.strip().splitlines() or [""])[-1])
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
