"""Bulk sends: cutting records into requests, and the merged outcome.

Chunking follows the official SDK exactly: a record is serialised once
(``json.dumps(..., ensure_ascii=False)``), its UTF-8 length is its size, a
record over ``MAX_RECORD_BYTES`` is never sent, and records are grouped by
:func:`django_suprsend.wire.records.iter_chunks` (at most 400 records and
819,200 bytes, counted as the sum of the records' sizes, per request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire.records import MAX_RECORD_BYTES, dumps, iter_chunks, utf8_size
from django_suprsend.wire.splitting import split_record

Record = dict[str, Any]
FailedRecord = dict[str, Any]

#: The code a record that never went on the wire is reported with (as the SDK does).
NOT_SENT_CODE = 500

#: What a failure is stored as in ``last_error_code`` when the hub gave no HTTP status for it
#: (the hub's own statuses are 100-599): the SDK's 500 would mix these with real hub 500s.
REFUSED_LOCALLY = 0  # refused before sending: a value or a record the hub would refuse
NO_ANSWER = 1  # sent, but no answer came back (connection refused or dropped, timeout)
LOCAL_ERROR_CODES = {REFUSED_LOCALLY: "refused before sending", NO_ANSWER: "no answer from the hub"}


@dataclass(repr=False)
class BulkResponse:
    """What happened to each record of a bulk send, merged over all requests.

    The first six fields mean what they mean in the SDK's ``BulkResponse``:
    ``status`` is ``"success"`` (every record delivered, also when there
    were none), ``"fail"`` (none delivered) or ``"partial"``;
    ``failed_records`` holds ``{"record", "error", "code"}`` dicts, where
    ``record`` is the whole record as given (map it back by ``$insert_id``),
    ``error`` the hub's answer or our reason and ``code`` the HTTP status
    (``500`` for a record never sent or a transport failure, like the SDK).

    Two fields are ours:

    ``retryable``
        The failed records (the same dicts as in ``failed_records``) that
        failed for a transient reason: retries ran out on ``429``, ``5xx``,
        a connection error or a timeout. Sending them again later may work;
        the other failures will fail again as they are.
    ``succeeded_insert_ids``
        The ``$insert_id`` of every delivered record, in sending order.
    ``retry_after``
        The longest ``Retry-After`` (in seconds) the hub asked for on a
        request that was finally given up, or None: wait at least that long
        before sending the ``retryable`` records again.
    """

    status: str = "success"
    total: int = 0
    success: int = 0
    failure: int = 0
    failed_records: list[FailedRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    retryable: list[FailedRecord] = field(default_factory=list)
    succeeded_insert_ids: list[str] = field(default_factory=list)
    retry_after: float | None = None
    unsent: list[FailedRecord] = field(default_factory=list)  # no HTTP status came for these
    #: A profile edit over ``MAX_RECORD_BYTES`` goes in several records (see
    #: :mod:`django_suprsend.wire.splitting`): the ``$insert_id`` of each later part, mapped to
    #: the record's own (which its first part keeps)...
    parts: dict[str, str] = field(default_factory=dict)
    #: ...and, by the record's ``$insert_id``, the values that fit in no record (not sent).
    refused_values: dict[str, list[SuprsendValidationError]] = field(default_factory=dict)

    def failures_by_record(self) -> dict[str, FailedRecord]:
        """The failure of each record given, by its ``$insert_id``: of a split record, the
        failure of a part (a permanent one first: a retry could not make that one work)."""
        retryable = {id(f) for f in self.retryable}
        failures: dict[str, FailedRecord] = {}
        for failure in self.failed_records:
            insert_id = failure["record"].get("$insert_id")
            insert_id = self.parts.get(insert_id, insert_id)
            known = failures.get(insert_id)
            if known is None or (id(known) in retryable and id(failure) not in retryable):
                failures[insert_id] = failure
        return failures

    def stored_codes(self) -> dict[int, int]:
        """Each failure's code as ``last_error_code`` keeps it, by ``id()`` of the failure:
        the hub's HTTP status, or :data:`REFUSED_LOCALLY` / :data:`NO_ANSWER` where the hub
        gave none."""
        codes = {id(f): int(f["code"]) for f in self.failed_records}
        retryable = {id(f) for f in self.retryable}
        for f in self.unsent:
            codes[id(f)] = NO_ANSWER if id(f) in retryable else REFUSED_LOCALLY
        return codes

    @classmethod
    def delivered(cls, records: Sequence[Record]) -> BulkResponse:
        """All ``records`` were accepted by the hub."""
        return cls(
            status="success",
            total=len(records),
            success=len(records),
            succeeded_insert_ids=[r.get("$insert_id") for r in records],
        )

    @classmethod
    def failed(
        cls,
        records: Sequence[Record],
        error: str,
        code: int,
        *,
        retryable: bool = False,
        unsent: bool = False,
    ) -> BulkResponse:
        """All ``records`` failed with the same ``error`` and ``code`` (``unsent``: the hub
        gave no status for them)."""
        failed = [{"record": r, "error": error, "code": code} for r in records]
        return cls(
            status="fail",
            total=len(records),
            failure=len(records),
            failed_records=failed,
            retryable=list(failed) if retryable else [],
            unsent=list(failed) if unsent else [],
        )

    def merge(self, other: BulkResponse) -> None:
        """Add ``other``'s outcome to this one (the SDK's ``merge_chunk_response``).

        The first non-empty part sets the status; any mix of success and
        failure makes it ``"partial"``.
        """
        if other.total:
            if not self.total:
                self.status = other.status
            elif other.status != self.status:
                self.status = "partial"
        self.total += other.total
        self.success += other.success
        self.failure += other.failure
        self.failed_records.extend(other.failed_records)
        self.warnings.extend(other.warnings)
        self.retryable.extend(other.retryable)
        self.unsent.extend(other.unsent)
        self.succeeded_insert_ids.extend(other.succeeded_insert_ids)
        self.parts.update(other.parts)
        self.refused_values.update(other.refused_values)
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, other.retry_after)

    def __str__(self) -> str:
        return (
            f"BulkResponse<status: {self.status} | total: {self.total} | success: {self.success}"
            f" | failure: {self.failure} | warnings: {len(self.warnings)}>"
        )

    __repr__ = __str__


@dataclass
class Chunk:
    """Records sent together in one request, with the JSON text of each."""

    records: list[Record]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.records)

    def body(self) -> bytes:
        """The request body: byte for byte ``dumps(records).encode()``."""
        return ("[" + ", ".join(self.texts) + "]").encode("utf-8")

    def split(self) -> tuple[Chunk, Chunk]:
        """Two halves, in order (used to find the records a hub rejects)."""
        half = len(self.records) // 2
        return (
            Chunk(self.records[:half], self.texts[:half]),
            Chunk(self.records[half:], self.texts[half:]),
        )


OnSplit = Callable[[Record, list[Record], list[SuprsendValidationError]], None]


def chunk_records(
    records: Iterable[Record],
    on_invalid: Callable[[Record, str], None],
    on_split: OnSplit | None = None,
) -> Iterator[Chunk]:
    """Cut ``records`` into requests the way the SDK does, serialising each once.

    A profile edit over ``MAX_RECORD_BYTES`` is sent as the parts that
    :func:`~django_suprsend.wire.splitting.split_record` makes of it, in its place,
    after ``on_split(record, parts, refused_values)``. A record that cannot be
    sent (another record over the limit, an edit none of whose values fits,
    or one not JSON serialisable) is passed to ``on_invalid(record, reason)``
    and left out.
    """
    for pairs in iter_chunks(_sendable(records, on_invalid, on_split)):
        yield Chunk([pair[0] for pair in pairs], [pair[1] for pair in pairs])


def _sendable(
    records: Iterable[Record], on_invalid: Callable[[Record, str], None], on_split: OnSplit | None
) -> Iterator[tuple[Record, str]]:
    """``(record, dumps(record))`` for every record that may go on the wire."""
    for record in records:
        try:
            text = dumps(record)
        except (TypeError, ValueError) as exc:
            on_invalid(record, f"record is not JSON serialisable ({exc}); not sent")
            continue
        size = utf8_size(text)
        if size <= MAX_RECORD_BYTES:
            yield record, text
        elif on_split is None or "$user_operations" not in record:
            on_invalid(record, oversize_reason(size))
        else:
            parts, refused = split_record(record, size)
            on_split(record, parts, refused)
            if not parts:
                on_invalid(record, "; ".join(str(exc) for exc in refused) + "; not sent")
            yield from ((part, dumps(part)) for part in parts)


def oversize_reason(size: int) -> str:
    """Why a record of ``size`` bytes is not sent."""
    return (
        f"record too big: {size} bytes, over the limit of {MAX_RECORD_BYTES} bytes (10KB)"
        " for one record; not sent"
    )
