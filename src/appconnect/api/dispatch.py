"""The route table: (method, path) -> handler, one dict lookup per request.

The contract has only fixed paths (no path parameters), so a dict replaces a framework's route matching and
dependency machinery; `bench/http_layer.py` measured that difference (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Handlers by method and exact path. Registering one (method, path) twice is a programming error."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Handler] = {}

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            key = (method, path)
            if key in self.table:
                raise ValueError(f"{method} {path} is registered twice")
            self.table[key] = handler
            return handler

        return register

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("POST", path)

    def patch(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path)

    def put(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("PUT", path)

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path)

    def include(self, other: Router) -> None:
        """Add another module's routes (a connector's own pages): a path both register is still an error."""
        for (method, path), handler in other.table.items():
            self.route(method, path)(handler)

    def methods_by_path(self) -> dict[str, list[str]]:
        """For 405 answers: the methods each known path accepts (the `Allow` header)."""
        found: dict[str, list[str]] = {}
        for method, path in self.table:
            found.setdefault(path, []).append(method)
        return found
