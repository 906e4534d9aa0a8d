"""Why two output files differ: the first differing line (text) or byte, and for known formats
(PDF, PNG, zip, gzip) the cause (`format_cause`), e.g. an embedded date. Part of judge/checks.
"""

from __future__ import annotations

import codecs
import os
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro.judge.verdict import Check, _count, _names

_CHUNK = 1024 * 1024  # bytes read at a time when looking for the first difference
_SAMPLE = 8192  # bytes at the head of a file that decide whether it is text
_LINE_MAX = 4096  # bytes of a differing line read to show it
_SHOW = 48  # characters of a differing line shown in a detail


# --- text and binary files ----------------------------------------------------------------------


def _compare_bytes(name: str, pe: Path, pa: Path, info: Mapping[str, Any]) -> Check:
    try:
        found = _first_difference(pe, pa)
        if found is None:
            return Check("output", name, "same", "contents identical",
                         {**info, "compared": "bytes"})
        offset, line, line_start = found
        return _describe_difference(name, pe, pa, offset, line, line_start, info)
    except OSError as e:
        return Check("output", name, "different",
                     f"hash differs (cannot read the files: {e.strerror or e})",
                     {**info, "compared": "hash"})


def _first_difference(pe: Path, pa: Path, start: int = 0) -> tuple[int, int, int] | None:
    """(byte offset, 1-based line number, offset of that line's start) of the first
    difference, streaming both files from `start` (lines counted from there); None when their
    contents are equal."""
    offset = start
    newlines = 0
    line_start = start
    with open(pe, "rb") as fe, open(pa, "rb") as fa:
        fe.seek(start)
        fa.seek(start)
        while True:
            ce, ca = fe.read(_CHUNK), fa.read(_CHUNK)
            same = ce == ca
            i = len(ce) if same else _mismatch(ce, ca)
            prefix = ce[:i]
            newlines += prefix.count(b"\n")
            last = prefix.rfind(b"\n")
            if last >= 0:
                line_start = offset + last + 1
            if not same:
                return offset + i, newlines + 1, line_start
            if not ce:
                return None
            offset += len(ce)


def _mismatch(x: bytes, y: bytes) -> int:
    """Index of the first byte where x and y differ (len of the shorter if one is a prefix)."""
    n = min(len(x), len(y))
    i = 0
    step = 4096
    while i < n and x[i:i + step] == y[i:i + step]:
        i += step
    end = min(i + step, n)
    while i < end and x[i] == y[i]:
        i += 1
    return i


def _describe_difference(name: str, pe: Path, pa: Path, offset: int, line: int,
                         line_start: int, info: Mapping[str, Any]) -> Check:
    se, sa = pe.stat().st_size, pa.stat().st_size
    cause = format_cause(pe, pa)
    if cause is not None:
        where = (f"first difference at byte {offset}; "
                 + (f"both {se} bytes" if se == sa else f"sizes {se} vs {sa}"))
        return Check("output", name, "different", f"{cause} ({where})",
                     {**info, "compared": "format", "cause": cause, "size_expected": se,
                      "size_actual": sa, "offset": offset})
    head_e, line_e = _read_at(pe, 0, _SAMPLE), _read_line(pe, line_start)
    head_a, line_a = _read_at(pa, 0, _SAMPLE), _read_line(pa, line_start)
    sizes = {"size_expected": se, "size_actual": sa, "offset": offset}
    if all(_is_text(b) for b in (head_e, head_a, line_e, line_a)):
        col = offset - line_start
        te, ta = _shown_line(line_e, col, offset >= se), _shown_line(line_a, col, offset >= sa)
        return Check("output", name, "different", f"first difference at line {line}: {te} vs {ta}",
                     {**info, "compared": "text", "line": line, **sizes,
                      "line_expected": line_e.decode("utf-8", "replace")[:200],
                      "line_actual": line_a.decode("utf-8", "replace")[:200]})
    if offset >= se or offset >= sa:
        shorter = "recorded file" if offset >= se else "replay's file"
        detail = f"{shorter} ends at byte {offset}; sizes {se} vs {sa}"
    else:
        be, ba = _read_at(pe, offset, 1), _read_at(pa, offset, 1)
        detail = (f"first difference at byte {offset} (0x{be.hex()} vs 0x{ba.hex()}); "
                  + (f"both {se} bytes" if se == sa else f"sizes {se} vs {sa}"))
    return Check("output", name, "different", detail, {**info, "compared": "bytes", **sizes})


# --- known formats: why their bytes differ -----------------------------------------------------

_FORMAT_READ_MAX = 32 * 1024 * 1024  # bytes of a PDF read to look for its dates
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = (b"tIME", b"tEXt", b"iTXt", b"zTXt")
_PNG_MAX_CHUNKS = 100_000
_PNG_TEXT_MAX = 64 * 1024  # a text chunk's bytes read to get its keyword
_ZIP_MAX_MEMBERS = 100_000
_SDE_HINT = ("SOURCE_DATE_EPOCH fixes it: repro sets it at determinism `seed` and up unless the "
             "environment has one")
# PDF values that change with the clock, not with the figure: the Info dictionary's dates,
# the trailer's file identifier and the XMP metadata's dates.
_PDF_VOLATILE = (
    ("/CreationDate", re.compile(rb"/CreationDate\s*\((?:[^()\\]|\\.){0,128}\)")),
    ("/ModDate", re.compile(rb"/ModDate\s*\((?:[^()\\]|\\.){0,128}\)")),
    ("/ID", re.compile(rb"/ID\s*\[\s*<[0-9A-Fa-f]{0,128}>\s*<[0-9A-Fa-f]{0,128}>\s*\]")),
    ("xmp:CreateDate", re.compile(rb"<xmp:CreateDate>[^<]{0,128}</xmp:CreateDate>")),
    ("xmp:ModifyDate", re.compile(rb"<xmp:ModifyDate>[^<]{0,128}</xmp:ModifyDate>")),
    ("xmp:MetadataDate", re.compile(rb"<xmp:MetadataDate>[^<]{0,128}</xmp:MetadataDate>")),
)


def format_cause(pe: Path, pa: Path) -> str | None:
    """Why two files of a known format differ, when the format says: PDF dates and /ID, PNG
    tIME and text chunks, zip member times, the gzip header's mtime. None: not a known format,
    or nothing more precise to say than the first differing byte.

    Reads headers, chunk tables and central directories, not whole files (a PDF is read up to
    _FORMAT_READ_MAX bytes). Never raises for a damaged file.
    """
    try:
        head_e, head_a = _read_at(pe, 0, 8), _read_at(pa, 0, 8)
        if head_e.startswith(b"%PDF-") and head_a.startswith(b"%PDF-"):
            return _pdf_cause(pe, pa)
        if head_e == _PNG_SIGNATURE and head_a == _PNG_SIGNATURE:
            return _png_cause(pe, pa)
        if head_e.startswith(b"PK\x03\x04") and head_a.startswith(b"PK\x03\x04"):
            return _zip_cause(pe, pa)
        if head_e.startswith(b"\x1f\x8b") and head_a.startswith(b"\x1f\x8b"):
            return _gzip_cause(pe, pa)
    except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile):
        return None
    return None


def _pdf_cause(pe: Path, pa: Path) -> str | None:
    if max(pe.stat().st_size, pa.stat().st_size) > _FORMAT_READ_MAX:
        return None
    be, ba = pe.read_bytes(), pa.read_bytes()
    differing = []
    for label, pattern in _PDF_VOLATILE:
        if pattern.findall(be) != pattern.findall(ba):
            differing.append(label)
        be, ba = pattern.sub(label.encode(), be), pattern.sub(label.encode(), ba)
    if not differing:
        return None
    what = ", ".join(differing)
    if be == ba:
        return f"differs only in the PDF's {what} ({_SDE_HINT}; or savefig(..., " \
               f"metadata={{'CreationDate': None}}))"
    return f"the PDF's content differs, not only its {what}"


def _png_chunks(p: Path) -> list[tuple[bytes, int, bytes, bytes]] | None:
    """(type, length, crc, text keyword) per chunk; the image data is skipped, not read."""
    chunks = []
    with open(p, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        for _ in range(_PNG_MAX_CHUNKS):
            head = f.read(8)
            if len(head) < 8:
                break
            length, ctype = struct.unpack(">I4s", head)
            keyword = b""
            if ctype in (b"tEXt", b"iTXt", b"zTXt") and length <= _PNG_TEXT_MAX:
                keyword = f.read(length).split(b"\0", 1)[0]
            else:
                f.seek(length, os.SEEK_CUR)
            chunks.append((ctype, length, f.read(4), keyword))
            if ctype == b"IEND":
                break
    return chunks


def _png_cause(pe: Path, pa: Path) -> str | None:
    ce, ca = _png_chunks(pe), _png_chunks(pa)
    if ce is None or ca is None:
        return None
    image_e = [c for c in ce if c[0] not in _PNG_METADATA]
    image_a = [c for c in ca if c[0] not in _PNG_METADATA]
    meta_e = {(c[0], c[3]): c[2] for c in ce if c[0] in _PNG_METADATA}
    meta_a = {(c[0], c[3]): c[2] for c in ca if c[0] in _PNG_METADATA}
    changed = sorted((k for k in meta_e.keys() | meta_a.keys() if meta_e.get(k) != meta_a.get(k)),
                     key=lambda k: (k[0] != b"tIME", k))
    labels = ["tIME chunk" if t == b"tIME" else f"text chunk {kw.decode('latin-1')!r}"
              for t, kw in changed]
    if image_e == image_a:
        if not labels:
            return None  # same chunks, in another order
        return f"differs only in the PNG's {', '.join(labels)} ({_SDE_HINT}, or drop the " \
               f"metadata when saving)"
    types = sorted({c[0].decode("latin-1") for c in image_e + image_a}
                   - {c[0].decode("latin-1") for c in set(image_e) & set(image_a)})
    text = f"the PNG's image data differs ({', '.join(types) or 'chunk order'})"
    return text + (f"; its {', '.join(labels)} too" if labels else "")


def _zip_cause(pe: Path, pa: Path) -> str | None:
    with zipfile.ZipFile(pe) as ze, zipfile.ZipFile(pa) as za:
        le, la = ze.infolist(), za.infolist()
    if max(len(le), len(la)) > _ZIP_MAX_MEMBERS:
        return None
    me = {i.filename: i for i in le}
    ma = {i.filename: i for i in la}
    content = sorted(n for n in me.keys() | ma.keys()
                     if n not in me or n not in ma
                     or (me[n].CRC, me[n].file_size) != (ma[n].CRC, ma[n].file_size))
    if content:
        return f"zip members differ: {_names(content)}"
    timed = [n for n in me if me[n].date_time != ma[n].date_time]
    if timed:
        return (f"differs only in zip member times ({_count(len(timed), 'member')} of "
                f"{len(me)}: {_names(sorted(timed))}; {_SDE_HINT} and the writer honours it)")
    if [i.filename for i in le] != [i.filename for i in la]:
        return "differs only in the order of the zip's members"
    return "zip members identical; the archive's headers differ (extra fields, comments or " \
        "compression)"


def _gzip_cause(pe: Path, pa: Path) -> str | None:
    he, ha = _read_at(pe, 0, 10), _read_at(pa, 0, 10)
    if len(he) < 10 or len(ha) < 10 or he[4:8] == ha[4:8]:
        return None
    if he[:4] != ha[:4] or he[8:] != ha[8:] or _first_difference(pe, pa, start=10) is not None:
        return None
    return f"differs only in the gzip header's mtime ({_SDE_HINT}, or write it with mtime=0)"


def _read_at(p: Path, offset: int, n: int) -> bytes:
    with open(p, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _read_line(p: Path, start: int) -> bytes:
    """The line starting at `start`, without its newline, at most _LINE_MAX bytes."""
    chunk = _read_at(p, start, _LINE_MAX)
    end = chunk.find(b"\n")
    return chunk if end < 0 else chunk[:end]


def _is_text(sample: bytes) -> bool:
    """No NUL and valid UTF-8 (a character cut at the end of the sample is fine)."""
    if b"\0" in sample:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _shown_line(raw: bytes, col: int, at_end: bool) -> str:
    """A differing line for a detail: a window around byte column `col`, quoted."""
    if at_end and not raw:
        return "end of file"
    text = raw.decode("utf-8", "replace")
    char_col = len(raw[:col].decode("utf-8", "ignore"))
    if len(text) <= _SHOW:
        return repr(text)
    start = max(0, min(char_col - _SHOW // 4, len(text) - _SHOW))
    piece = text[start:start + _SHOW]
    return ("…" if start else "") + repr(piece) + ("…" if start + _SHOW < len(text) else "")


