"""Serve the embedded test CRM alone, in a process of its own, so a test can kill the connector server and
keep the CRM (and the write it is still doing) alive: `python -m tests.faults.crm_server --port P --database-url U`.

It is mounted under `/testcrm` as in the connector server, so `tests.conftest.CrmView` reads it unchanged."""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from appconnect.embedded_crm.app import create_testcrm_app
from tests.conftest import TESTCRM_ADMIN_TOKEN


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    crm = create_testcrm_app(args.database_url, fault_injection=True, admin_token=TESTCRM_ADMIN_TOKEN)
    app = Starlette(routes=[Mount("/testcrm", app=crm)])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
