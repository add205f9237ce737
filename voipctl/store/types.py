"""Column types that keep money exact and times in UTC on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Integer
from sqlalchemy.types import TypeDecorator

from voipctl import money


class Money(TypeDecorator[Decimal]):
    """A Decimal amount stored as integer units of 10**-money.SCALE (never REAL).

    Bulk paths may write the integer from `money.to_units()` straight through the
    driver; the ORM and Core statements convert Decimal <-> units here.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Decimal):
            raise TypeError(f"Money columns take Decimal, not {type(value).__name__}")
        return money.to_units(value)

    def process_result_value(self, value, dialect):
        return None if value is None else money.from_units(value)


class Percent(TypeDecorator[Decimal]):
    """A Decimal percentage with up to 4 decimals, stored as integer ten-thousandths."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        units = value.scaleb(4)
        if units != units.to_integral_value():
            raise ValueError(f"percentage {value} has more than 4 decimals")
        return int(units)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value).scaleb(-4)


class UTCTime(TypeDecorator[datetime]):
    """An aware UTC datetime stored as integer epoch seconds.

    Integers compare, index and bulk-load fast on both databases; display code
    converts to the client's time zone at the edge.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, int):
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return int(value.timestamp())

    def process_result_value(self, value, dialect):
        return None if value is None else datetime.fromtimestamp(value, UTC)
