"""Translation catalogues without GNU gettext: read a .po file and write its .mo (what `msgfmt`
does for the subset we use: msgctxt, msgid, msgstr, no plurals). `make messages` runs it, so a
fresh machine needs no Debian package; tests/test_i18n.py checks the committed .mo files.

    python -m petpro_booking.core.catalogue          # every locale/*/LC_MESSAGES/*.po
"""

from __future__ import annotations

import array
import ast
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def po_entries(text: str) -> dict[str, str]:
    """`{key: translation}`; a key with a context is `context + "\\x04" + msgid` (gettext's)."""
    entries: dict[str, str] = {}
    current: dict[str, str] = {}
    field = None

    def flush() -> None:
        if "msgid" in current and "msgstr" in current:
            key = current["msgid"]
            if "msgctxt" in current:
                key = f"{current['msgctxt']}\x04{key}"
            entries[key] = current["msgstr"]
        current.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            if not line and "msgstr" in current:
                flush()
            continue
        if line.startswith('"'):
            current[field] += ast.literal_eval(line)  # type: ignore[index]
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgctxt" or (keyword == "msgid" and "msgstr" in current):
            flush()
        field = keyword
        current[field] = ast.literal_eval(rest)
    flush()
    return entries


def mo_bytes(entries: dict[str, str]) -> bytes:
    """GNU .mo (little-endian, no hash table), as CPython's Tools/i18n/msgfmt.py writes it."""
    keys = sorted(entries)
    ids = strs = b""
    offsets = []
    for key in keys:
        raw_id, raw_str = key.encode(), entries[key].encode()
        offsets.append((len(ids), len(raw_id), len(strs), len(raw_str)))
        ids += raw_id + b"\0"
        strs += raw_str + b"\0"
    key_start = 7 * 4 + 16 * len(keys)
    value_start = key_start + len(ids)
    key_offsets: list[int] = []
    value_offsets: list[int] = []
    for id_at, id_len, str_at, str_len in offsets:
        key_offsets += [id_len, id_at + key_start]
        value_offsets += [str_len, str_at + value_start]
    header = struct.pack("Iiiiiii", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + len(keys) * 8, 0, 0)
    return header + array.array("i", key_offsets + value_offsets).tobytes() + ids + strs


def catalogues() -> list[Path]:
    return sorted((ROOT / "locale").glob("*/LC_MESSAGES/*.po"))


def compile_all() -> list[Path]:
    written = []
    for po in catalogues():
        mo = po.with_suffix(".mo")
        mo.write_bytes(mo_bytes(po_entries(po.read_text(encoding="utf-8"))))
        written.append(mo)
    return written


if __name__ == "__main__":
    for path in compile_all():
        sys.stdout.write(f"compiled {path.relative_to(ROOT)}\n")
