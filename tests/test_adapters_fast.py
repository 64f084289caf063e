"""The shortcuts the adapters take for speed give exactly what the libraries they shortcut give."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import phonenumbers
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import france_travail, hrxml, nav_ads, people
from adapters.json_offers import timestamp
from adapters.people import _plain_national, e164
from adapters.tabular import _date_pattern

REGIONS = ("SN", "ML", "BJ", "CM", "GH", "TG", "CV", "MR", "MA", "TN", "FR", "SE")


def _library(raw: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(REGIONS),
    st.lists(st.text("0123456789", min_size=1, max_size=5), min_size=1, max_size=5),
    st.sampled_from([" ", ".", "-", ""]),
    st.sampled_from(["", "+", "00", "0"]),
)
@pytest.mark.slow
def test_plain_national_numbers_read_as_libphonenumber_reads_them(region, groups, separator, prefix):
    raw = prefix + separator.join(groups)
    fast = _plain_national(raw, region)
    if fast is not None:
        assert fast == _library(raw, region)
    expected = _library(raw, region)
    valid = expected is not None and phonenumbers.is_valid_number(expected)
    assert e164(raw, region) == (
        phonenumbers.format_number(expected, phonenumbers.PhoneNumberFormat.E164) if valid else None
    )


def test_plain_national_takes_the_common_forms_and_leaves_the_rest_to_the_parser():
    assert _plain_national("77 123 45 67", "SN") == phonenumbers.parse("77 123 45 67", "SN")
    for raw, region in [
        ("0612345678", "MA"),  # a trunk prefix: the parser strips it
        ("+221 77 123 45 67", "SN"),  # an international form
        ("221771234567", "SN"),  # maybe the country code without "+"
        ("00221771234567", "SN"),  # the international call prefix
        ("77 123 45 67 ext 2", "SN"),  # an extension
        ("٧٧١٢٣٤٥٦٧", "MR"),  # Arabic-Indic digits
    ]:
        assert _plain_national(raw, region) is None, raw
    assert e164("٧٧١٢٣٤٥٦٧", "SN") == "+221771234567"  # the parser still reads them
    assert e164("77 123 45", "SN") is None


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["%d/%m/%Y", "%Y-%m-%d", "%d.%m.%Y"]),
    st.text("0123456789/-. ", max_size=12),
)
def test_dates_read_by_the_pattern_are_what_strptime_reads(date_format, value):
    pattern = _date_pattern(date_format)
    assert pattern is not None
    found = pattern.fullmatch(value)
    if found is None:
        return  # strptime decides alone
    try:
        expected = datetime.strptime(value, date_format).date()
    except ValueError:
        expected = None
    try:
        fast = datetime(int(found["Y"]), int(found["m"]), int(found["d"])).date()
    except ValueError:
        fast = None
    assert fast == expected


def test_only_day_month_year_formats_get_a_pattern():
    assert _date_pattern("%d/%m/%Y") is not None
    for other in ("%d/%m/%y", "%d %b %Y", "%Y-%m-%dT%H:%M", "%d/%d/%Y", "%d%%%m%Y"):
        assert _date_pattern(other) is None, other


@settings(max_examples=2000, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), st.integers(min_value=-14 * 60, max_value=14 * 60)),
)
def test_the_fast_timestamp_is_protobufs(moment, offset_minutes):
    """adapters.json_offers.timestamp against Timestamp.FromDatetime, naive (read as UTC) and with
    offsets, over the whole range a Timestamp holds."""
    if offset_minutes is not None:
        moment = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert timestamp(moment) == expected


@pytest.mark.parametrize(
    "read",
    [
        lambda: people.period_date("٢٠١٩-٠٣"),
        lambda: people.full_date("２０１９-０３-０１"),
        lambda: people.dotted_date("٠١.٠٣.٢٠١٩"),
        lambda: people.NACE.fullmatch("C٣٣.١٧"),
        lambda: hrxml.NAV_NACE.fullmatch("C٣٣.١.٧"),
        lambda: nav_ads._nace("٣٣.١٧٠"),
        lambda: nav_ads.STYRK.fullmatch("٧٤١١.١١"),
        lambda: france_travail.HOURS.search("٣٥H٠٠"),
    ],
    ids=["period", "full-date", "dotted-date", "nace", "nav-nace", "sn2007", "styrk", "hours"],
)
def test_dates_and_codes_in_other_digits_are_not_read(read):
    """Issue 25, item 5: the adapters read dates and codes in ASCII digits only (docs/adapters.md)."""
    assert not read()
