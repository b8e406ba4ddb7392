"""Money as exact integers: microcents, the unit the inference.sh estimate endpoint uses.

1 USD = 100 cents = 100,000,000 microcents. Floats never hold money here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROCENTS_PER_USD = 100_000_000
MAX_USD = 1_000_000_000  # no amount in a recipe or on a command line is more than this

__all__ = ["MAX_USD", "MICROCENTS_PER_USD", "format_usd", "parse_usd", "usd_decimal"]


def parse_usd(value: object) -> int:
    """Parse a dollar amount (``"0.028"``, ``12``, ``1.5``) into microcents.

    Raises ``ValueError`` for anything that is not a finite, non-negative amount
    expressible in whole microcents.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"expected an amount in USD, got {type(value).__name__}")  # noqa: TRY004 - one error kind for callers
    try:
        # str() first so that 0.1 (a float) means the decimal 0.1 the user wrote.
        amount = Decimal(str(value).strip().removeprefix("$"))
    except InvalidOperation:
        raise ValueError(f"not an amount in USD: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a non-negative amount in USD: {value!r}")
    if amount > MAX_USD:
        raise ValueError(f"more than $1,000,000,000: {str(value)[:20]}{'...' if len(str(value)) > 20 else ''}")
    micro = amount * MICROCENTS_PER_USD
    if micro != micro.to_integral_value():
        raise ValueError(f"more precision than a microcent: {value!r}")
    return int(micro)


def format_usd(microcents: int) -> str:
    """``2_800_000`` -> ``"$0.028"``; at least two decimals, no trailing noise."""
    sign = "-" if microcents < 0 else ""
    text = f"{Decimal(abs(microcents)) / MICROCENTS_PER_USD:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{frac}"


def usd_decimal(microcents: int) -> str:
    """``2_800_000`` -> ``"0.028"``: the exact amount as a decimal string (for JSON)."""
    return format_usd(microcents).replace("$", "", 1)
