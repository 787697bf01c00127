"""Output references: a whole Parquet file, or a row range of a pack shared by tasks."""

import pytest

from modelops_contracts import OutputRef, blob_keys, output_ref, parse_output_ref


def test_a_plain_uri_is_a_whole_file() -> None:
    assert parse_output_ref("s3://b/results/ab/abc/summary.parquet") == OutputRef(
        "s3://b/results/ab/abc/summary.parquet", None
    )


def test_a_row_range_round_trips() -> None:
    ref = output_ref("file:///x/packs/ab/ab12.parquet", 277, 554)
    assert ref == "file:///x/packs/ab/ab12.parquet#rows=277-554"
    assert parse_output_ref(ref) == OutputRef("file:///x/packs/ab/ab12.parquet", (277, 554))


def test_an_empty_range_is_allowed() -> None:
    assert parse_output_ref(output_ref("s3://b/p.parquet", 5, 5)).rows == (5, 5)


@pytest.mark.parametrize(
    "ref", ["s3://b/p.parquet#rows=5-4", "s3://b/p.parquet#row=1-2", "s3://b/p.parquet#rows=1"]
)
def test_a_bad_fragment_is_named(ref: str) -> None:
    with pytest.raises(ValueError, match="rows"):
        parse_output_ref(ref)


def test_a_bad_range_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="start <= stop"):
        output_ref("s3://b/p.parquet", 3, 2)
    with pytest.raises(ValueError, match="fragment"):
        output_ref("s3://b/p.parquet#rows=0-1", 0, 1)


def test_packs_are_keyed_by_their_digest() -> None:
    digest = "ab" + "0" * 62
    assert blob_keys.result_pack(digest) == f"packs/ab/{digest}.parquet"
