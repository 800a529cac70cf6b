"""From a request to its endpoint: the path below the prefix, the route, auth, the method."""

from __future__ import annotations

import traceback
from collections.abc import Sequence

from django_suprsend.testing.auth import Authenticator
from django_suprsend.testing.recorded import RecordedRequest
from django_suprsend.testing.records import HubError
from django_suprsend.testing.responses import Response, Route, error_response, json_response

__all__ = ["Router", "local_path"]


def local_path(uri: str, prefix: str) -> str:
    """The path of a request URI below ``prefix``, query dropped ("" when outside)."""
    path = uri.partition("?")[0]
    if not prefix:
        return path
    return path.removeprefix(prefix) if path.startswith(prefix + "/") else ""


class Router:
    def __init__(self, routes: Sequence[Route], auth: Authenticator) -> None:
        self._routes = tuple(routes)
        self._auth = auth

    def answer(
        self,
        request: RecordedRequest,
        prefix: str,
        *,
        check_auth: bool,
        max_clock_skew: float | None,
    ) -> Response:
        """The endpoint's answer, or the error answer of a HubError (500 for a bug)."""
        try:
            return self._route(request, prefix, check_auth, max_clock_skew)
        except HubError as error:
            return error_response(error)
        except Exception as error:  # a bug here or in a test's predicate
            traceback.print_exc()
            return json_response(500, {"code": 500, "message": f"emulator error: {error!r}"})

    def _route(
        self, request: RecordedRequest, prefix: str, check_auth: bool, max_skew: float | None
    ) -> Response:
        path = local_path(request.path, prefix)
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is not None:
                break
        else:
            raise HubError(404, f"no endpoint at {request.path!r}")
        envs: frozenset[str] = frozenset()
        if route.auth:  # the env values records may carry
            envs = self._auth.authenticate(request, max_skew) if check_auth else self._auth.envs()
        handler = route.methods.get(request.method)
        if handler is None:
            allowed = ", ".join(route.methods)
            raise HubError(405, f"{request.method} is not allowed on {path} (use {allowed})")
        return handler(request, match, envs)
