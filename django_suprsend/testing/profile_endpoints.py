"""The profile endpoints: async edits (``POST event/``) and ``v1/user/...`` REST calls."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote

from django_suprsend.testing.profiles import utc_now
from django_suprsend.testing.recorded import RecordedRequest
from django_suprsend.testing.records import (
    HubError,
    check_limits,
    check_records,
    describe,
    operations_error,
    parse_event_body,
    parse_json,
    record_summary,
    upsert_body_error,
)
from django_suprsend.testing.responses import Response, Route, json_response
from django_suprsend.testing.state import HubState

__all__ = ["ProfileEndpoints"]

Record = dict[str, Any]


class ProfileEndpoints:
    def __init__(self, state: HubState) -> None:
        self._state = state

    def routes(self) -> tuple[Route, ...]:
        return (
            Route(re.compile(r"/event/"), {"POST": self.post_event}),
            Route(
                re.compile(r"/v1/user/([^/]+)/"),
                {
                    "GET": self.get_user,
                    "PATCH": self.patch_user,
                    "POST": self.post_user,
                    "DELETE": self.delete_user,
                },
            ),
            Route(re.compile(r"/v1/bulk/user/"), {"DELETE": self.bulk_delete}),
        )

    def post_event(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        records, raw_texts = parse_event_body(request.body)
        request.record_count = len(records)
        check_limits(records, raw_texts)
        check_records(records, envs)
        self._check_reject_rules(records)
        now = utc_now()
        state = self._state
        counts, fresh = state.insert_id_counts, []  # fresh: records to apply, by index
        arrivals = state.arrivals
        with state.lock:
            sequence = state.sequence  # state.arrive() inlined: this runs for every record
            for index, record in enumerate(records):
                insert_id = record["$insert_id"]
                seen = counts.get(insert_id, 0)  # not counts[...]: Counter.__missing__ is Python
                counts[insert_id] = seen + 1
                if not seen:
                    fresh.append(index)
                    sequence += 1
                    arrival = (sequence, "profile", insert_id)
                    entries = arrivals.get(record["distinct_id"])
                    if entries is None:
                        arrivals[record["distinct_id"]] = [arrival]
                    else:
                        entries.append(arrival)
            state.sequence = sequence
            if fresh:
                # applied when the store is next used, from the records' text as sent if
                # there is one: a fifth of the memory of the parsed records
                source = records if raw_texts is None else raw_texts
                state.store.defer(_edits(source, fresh), now)
        return json_response(202, {"success": True, "message_id": str(uuid.uuid4())})

    def _check_reject_rules(self, records: list[Record]) -> None:
        with self._state.lock:
            rules = list(self._state.reject_rules)
        for rule in rules:
            hits = [i for i, record in enumerate(records) if rule.predicate(record)]
            if hits:
                raise HubError(
                    rule.status,
                    f"{rule.error}: {describe(hits[0], records[hits[0]])}",
                    records=[record_summary(i, records[i]) for i in hits],
                )

    def get_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        distinct_id = unquote(match[1])
        with self._state.lock:
            profile = self._state.store.get(distinct_id)
        if profile is None:
            raise _user_not_found(distinct_id)
        return json_response(200, profile)

    def patch_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        distinct_id = unquote(match[1])
        body = parse_json(request.body)
        # {} is what the SDK sends for an edit without operations: a no-op
        operations = body.get("operations", []) if isinstance(body, dict) else None
        error = operations_error(operations)
        if error is not None or operations is None:
            raise HubError(
                400, f'user {distinct_id!r}: body must be {{"operations": [...]}}; {error}'
            )
        now = utc_now()
        store = self._state.store
        with self._state.lock:
            self._state.arrive((distinct_id,), "profile", None)
            store.ensure(distinct_id, now)
            store.apply(distinct_id, operations, now)
            profile = store.get(distinct_id)
        return json_response(200, profile)

    def post_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        distinct_id = unquote(match[1])
        body = parse_json(request.body)
        error = upsert_body_error(body)
        if error is not None:
            raise HubError(400, f"user {distinct_id!r}: {error}")
        with self._state.lock:
            self._state.arrive((distinct_id,), "profile", None)
            created = self._state.store.upsert(distinct_id, body)
            profile = self._state.store.get(distinct_id)
        return json_response(201 if created else 200, profile)

    def delete_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        distinct_id = unquote(match[1])
        with self._state.lock:
            deleted = self._state.store.delete(distinct_id)
        if not deleted:
            raise _user_not_found(distinct_id)
        return Response(204)

    def bulk_delete(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        body = parse_json(request.body)
        distinct_ids = body.get("distinct_ids") if isinstance(body, dict) else None
        if not isinstance(distinct_ids, list) or not all(isinstance(i, str) for i in distinct_ids):
            raise HubError(400, 'body must be {"distinct_ids": ["<distinct_id>", ...]}')
        with self._state.lock:
            for distinct_id in distinct_ids:
                self._state.store.delete(distinct_id)
        return json_response(202, {"success": True})


def _edits(records: Sequence[Any], indices: list[int]) -> Iterator[tuple[str, Any]]:
    """The (distinct_id, operations) of ``records[i]`` for each index, parsing JSON texts.

    A text was parsed once already, strictly: json.loads reads the same values.
    """
    for index in indices:
        record = records[index]
        if isinstance(record, str):
            record = json.loads(record)
        yield record["distinct_id"], record["$user_operations"]


def _user_not_found(distinct_id: str) -> HubError:
    return HubError(404, f"user '{distinct_id}' not found")
