"""Certificate serial numbers (RFC 5280 4.1.2.2).

A serial is a positive integer of at most 20 octets. ehrca draws 159 random bits
from the OS CSPRNG (``secrets``), so the DER INTEGER never needs a sign byte beyond
20 octets and carries far more than the 64 random bits that CA/B Forum BR 7.1 asks.
Uniqueness per issuer is enforced by the database (unique constraint), not here.
In the database and in URLs a serial is 40 lowercase hex digits.
"""

from __future__ import annotations

import secrets

SERIAL_BITS = 159
SERIAL_HEX_WIDTH = 40


def generate_serial_number() -> int:
    """Return a random serial in ``[2**64, 2**159 - 1]`` (redraws the tiny chance below)."""
    while True:
        value = secrets.randbits(SERIAL_BITS)
        if value >= 2**64:
            return value


def serial_to_hex(serial_number: int) -> str:
    """Format ``serial_number`` as fixed-width (40) lowercase hex.

    Raises:
        ValueError: if it is not positive or exceeds 20 octets (RFC 5280 4.1.2.2).
    """
    if serial_number <= 0 or serial_number >= 2**159:
        raise ValueError("serial number must be positive and at most 159 bits, RFC 5280 4.1.2.2")
    return format(serial_number, f"0{SERIAL_HEX_WIDTH}x")


def parse_serial_hex(text: str) -> int:
    """Parse a serial given as hex (any case, optional ``0x``, optional ``:`` separators).

    Raises:
        ValueError: if ``text`` is not hex or the value is out of range.
    """
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    if (
        not cleaned
        or len(cleaned) > SERIAL_HEX_WIDTH
        or any(c not in "0123456789abcdef" for c in cleaned)
    ):
        raise ValueError("serial number must be 1 to 40 hexadecimal digits")
    value = int(cleaned, 16)
    serial_to_hex(value)
    return value
