"""A bulk send of profile records: chunks sent ahead on a thread while the next is built,
and a chunk the hub refuses as a whole bisected until the bad records stand alone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import requests

from django_suprsend.exceptions import (
    SuprsendAuthenticationError,
    SuprsendTransportError,
)
from django_suprsend.wire.answers import (
    AUTH_ERRORS,
    _foreign_answer,
    _retry_after,
)
from django_suprsend.wire.bulk import NOT_SENT_CODE, BulkResponse, Chunk
from django_suprsend.wire.retry import is_retryable_status

if TYPE_CHECKING:
    from django_suprsend.wire.client import SuprsendClient

logger = logging.getLogger("django_suprsend.wire.client")  # the client's log


class _BulkSender:
    """Sends the chunks of one :meth:`SuprsendClient.send_records` call, in order."""

    def __init__(self, client: SuprsendClient) -> None:
        self.client = client
        self.single_attempt = replace(client.retry, max_attempts=1)
        self.degraded = False
        self.refused: tuple[str, int] | None = None  # the error and status of a 401/403

    def send(self, chunk: Chunk) -> BulkResponse:
        if self.refused is not None:
            return BulkResponse.failed(chunk.records, *self.refused)
        policy = self.single_attempt if self.degraded else None
        try:
            response = self.client._send("POST", "event/", chunk.body(), policy)
        except SuprsendTransportError as exc:
            self.degraded = True
            return BulkResponse.failed(
                chunk.records, str(exc), NOT_SENT_CODE, retryable=True, unsent=True
            )
        return self._outcome(chunk, response)

    def _outcome(self, chunk: Chunk, response: requests.Response) -> BulkResponse:
        status = response.status_code
        if 200 <= status < 300:
            foreign = _foreign_answer(response)
            if foreign is None:
                self.degraded = False
                return BulkResponse.delivered(chunk.records)
            # Not the hub's answer (a proxy's or captive portal's page): nothing says the
            # records were applied, so they go again later under the same $insert_ids.
            self.degraded = True
            return BulkResponse.failed(
                chunk.records, self.client._secret.scrub(foreign), status, retryable=True
            )
        text = self.client._error_text(response)
        if status in AUTH_ERRORS:
            path = self.client._base_path + "event/"
            error = str(SuprsendAuthenticationError(status, text, method="POST", path=path))
            self.refused = (error, status)
            return BulkResponse.failed(chunk.records, *self.refused)
        if is_retryable_status(status):
            self.degraded = True
            outcome = BulkResponse.failed(chunk.records, text, status, retryable=True)
            outcome.retry_after = _retry_after(response)
            return outcome
        if len(chunk) == 1:
            return BulkResponse.failed(chunk.records, text, status)
        return self._bisect(chunk, status)

    def _bisect(self, chunk: Chunk, status: int) -> BulkResponse:
        logger.info(
            "SuprSend POST event/: HTTP %d for %d records; splitting to find the ones at fault",
            status,
            len(chunk),
        )
        left, right = chunk.split()
        outcome = self.send(left)
        outcome.merge(self.send(right))
        return outcome


_In = TypeVar("_In")
_Out = TypeVar("_Out")


def send_ahead(send: Callable[[_In], _Out], chunks: Iterable[_In]) -> Iterator[_Out]:
    """``send(chunk)`` for each chunk, in order, while the next chunk is being prepared.

    One worker thread sends; this thread produces the chunks, so that
    serialisation overlaps the round trip to the hub. At most one chunk
    waits while another is in flight.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suprsend-send")
    try:
        in_flight: Future[_Out] | None = None
        for chunk in chunks:
            queued = pool.submit(send, chunk)
            if in_flight is not None:
                yield in_flight.result()
            in_flight = queued
        if in_flight is not None:
            yield in_flight.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
