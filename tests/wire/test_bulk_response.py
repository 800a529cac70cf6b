"""BulkResponse merge rules (as the SDK's) and the chunking of records."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from django_suprsend.wire.bulk import BulkResponse, Chunk, chunk_records
from django_suprsend.wire.records import MAX_RECORD_BYTES, dumps


def rec(n: int, **extra) -> dict:
    return {"$insert_id": f"id-{n}", "distinct_id": f"u{n}", **extra}


def collect(records):
    invalid: list[tuple[dict, str]] = []
    chunks = list(chunk_records(records, lambda r, reason: invalid.append((r, reason))))
    return chunks, invalid


# -- BulkResponse ----------------------------------------------------------------


def test_empty_response_is_a_success_with_zero_totals():
    response = BulkResponse()
    assert (response.status, response.total, response.success, response.failure) == (
        "success",
        0,
        0,
        0,
    )
    assert response.failed_records == response.warnings == response.retryable == []
    assert str(response) == (
        "BulkResponse<status: success | total: 0 | success: 0 | failure: 0 | warnings: 0>"
    )


def test_str_is_the_sdk_format():
    response = BulkResponse.delivered([rec(1)])
    response.warnings.append("w")
    expected = "BulkResponse<status: success | total: 1 | success: 1 | failure: 0 | warnings: 1>"
    assert str(response) == repr(response) == expected


def part(status: str) -> BulkResponse:
    if status == "success":
        return BulkResponse.delivered([rec(1)])
    if status == "fail":
        return BulkResponse.failed([rec(2)], "boom", 500)
    mixed = BulkResponse.delivered([rec(3)])
    mixed.merge(BulkResponse.failed([rec(4)], "boom", 400))
    return mixed


# meta.status_merge: the first part sets the status; any mix gives "partial".
@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["success"], "success"),
        (["fail"], "fail"),
        (["success", "success", "success"], "success"),
        (["fail", "fail"], "fail"),
        (["success", "fail"], "partial"),
        (["fail", "success"], "partial"),
        (["success", "partial"], "partial"),
        (["partial", "success"], "partial"),
        (["fail", "partial", "fail"], "partial"),
    ],
)
def test_status_merge_rules(parts, expected):
    response = BulkResponse()
    for status in parts:
        response.merge(part(status))
    assert response.status == expected


def test_merging_an_empty_part_changes_nothing():
    response = BulkResponse.failed([rec(1)], "boom", 500)
    response.merge(BulkResponse())
    assert (response.status, response.total) == ("fail", 1)


def test_merge_adds_counts_and_keeps_order():
    response = BulkResponse()
    response.merge(BulkResponse.failed([rec(1)], "too big", 500))
    response.merge(BulkResponse.delivered([rec(2), rec(3)]))
    response.merge(BulkResponse.failed([rec(4), rec(5)], "busy", 503, retryable=True))
    assert (response.total, response.success, response.failure) == (5, 2, 3)
    assert [f["record"]["distinct_id"] for f in response.failed_records] == ["u1", "u4", "u5"]
    assert response.succeeded_insert_ids == ["id-2", "id-3"]
    assert response.status == "partial"


def test_failed_records_have_the_sdk_shape():
    response = BulkResponse.failed([rec(1)], "internal server error", 500)
    assert response.failed_records == [
        {"record": rec(1), "error": "internal server error", "code": 500}
    ]


def test_retryable_is_the_subset_of_failed_records_that_may_succeed_later():
    response = BulkResponse.failed([rec(1)], "bad request", 400)
    response.merge(BulkResponse.failed([rec(2), rec(3)], "busy", 429, retryable=True))
    assert [f["record"]["distinct_id"] for f in response.retryable] == ["u2", "u3"]
    assert all(any(f is g for g in response.failed_records) for f in response.retryable)


# -- chunking --------------------------------------------------------------------


def test_chunks_of_at_most_400_records():
    chunks, invalid = collect(rec(i) for i in range(1000))
    assert [len(c) for c in chunks] == [400, 400, 200]
    assert invalid == []
    assert chunks[1].records[0]["distinct_id"] == "u400"


def test_exactly_400_records_make_one_chunk():
    chunks, _ = collect(rec(i) for i in range(400))
    assert [len(c) for c in chunks] == [400]


def sized(n: int, size: int) -> dict:
    """A record whose JSON is exactly ``size`` bytes."""
    record = rec(n, blob="")
    record["blob"] = "x" * (size - len(dumps(record).encode()))
    assert len(dumps(record).encode()) == size
    return record


def test_byte_budget_is_the_sum_of_record_sizes():
    # 80 records of 10,240 bytes are exactly 819,200 bytes: the 81st starts a new chunk.
    chunks, _ = collect(sized(i, 10_240) for i in range(161))
    assert [len(c) for c in chunks] == [80, 80, 1]


def test_record_that_would_cross_the_budget_starts_a_new_chunk():
    full = [sized(i, 10_000) for i in range(81)]  # 810,000 bytes
    chunks, _ = collect([*full, sized(81, 9_201)])  # 819,201 > 819,200
    assert [len(c) for c in chunks] == [81, 1]


def test_a_chunk_may_fill_the_budget_exactly():
    full = [sized(i, 10_000) for i in range(81)]
    chunks, _ = collect([*full, sized(81, 9_200), rec(82)])  # 819,200, then full
    assert [len(c) for c in chunks] == [82, 1]


def test_size_limit_of_one_record_is_inclusive():
    chunks, invalid = collect([sized(1, MAX_RECORD_BYTES), sized(2, MAX_RECORD_BYTES + 1)])
    assert [c.records[0]["distinct_id"] for c in chunks] == ["u1"]
    (record, reason), *_ = invalid
    assert record["distinct_id"] == "u2"
    assert "10241 bytes" in reason
    assert "10240" in reason


def test_size_counts_utf8_bytes_not_characters():
    record = sized(1, MAX_RECORD_BYTES - 100)
    record["blob"] = record["blob"][:-60] + "é" * 60  # 60 more bytes, same length
    assert len(dumps(record)) == MAX_RECORD_BYTES - 100
    record["blob"] += "日" * 60  # 180 more bytes, 60 more characters
    chunks, invalid = collect([record])
    assert chunks == []
    assert f"{MAX_RECORD_BYTES - 100 + 60 + 180} bytes" in invalid[0][1]


def test_unserialisable_record_is_reported_and_the_rest_go_on():
    bad = rec(2, when=datetime(2024, 1, 1))
    chunks, invalid = collect([rec(1), bad, rec(3)])
    assert [r["distinct_id"] for r in chunks[0].records] == ["u1", "u3"]
    assert invalid[0][0] is bad
    assert "not JSON serialisable" in invalid[0][1]


def test_body_is_byte_identical_to_dumping_the_list():
    records = [rec(1, name="José 日本 🚀"), rec(2, big=1e20), rec(3, ctrl="\x01")]
    (chunk,) = collect(records)[0]
    assert chunk.body() == json.dumps(records, ensure_ascii=False).encode("utf-8")


def test_split_keeps_order_and_texts():
    records = [rec(i) for i in range(5)]
    chunk = Chunk(records, [dumps(r) for r in records])
    left, right = chunk.split()
    assert [len(left), len(right)] == [2, 3]
    assert left.records + right.records == records
    assert right.body() == dumps(records[2:]).encode()
