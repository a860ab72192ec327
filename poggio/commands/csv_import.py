"""``poggio import KIND FILE.csv``: streamed in chunks inside one transaction: all rows written, or none."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO

from poggio.errors import InvalidInput, PoggioError
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.storage.db import writing
from poggio.storage.models import Workspace

log = logging.getLogger(__name__)

MAX_ROWS = 2_000_000
MAX_REPORTED = 50
MAX_ERRORS = 10_000  # validation stops after this many bad rows (the first MAX_REPORTED are shown)


@dataclass
class ImportReport:
    kind: str
    rows: int
    imported: int
    errors: list[tuple[int, str, str]]


CHUNK = 5000  # rows validated and written at a time: memory stays bounded whatever the file's size


def read_rows(text: Iterable[str], columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of a CSV text stream as ``(line, {column: value})``, read as they are needed; the
    header is checked at once (before the first row is asked for)."""
    reader = csv.reader(text)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("file", "the file is empty; the first line must be the header") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise InvalidInput("header", f"line 1: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
    index = {c: header.index(c) for c in columns}

    def rows():
        count = 0
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            count += 1
            if count > MAX_ROWS:
                raise InvalidInput("file", f"more than {MAX_ROWS:,} rows; split the file")
            if len(record) != len(header):
                yield line, {"__error__": f"{len(record)} fields, the header has {len(header)}"}
                continue
            yield line, {c: record[i] for c, i in index.items()}

    return rows()


def import_csv(
    registry: PackRegistry,
    workspace: Workspace,
    kind: str,
    data: bytes | BinaryIO,
    actor: Actor,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``data`` (the file's bytes, or a binary file to stream) in chunks of :data:`CHUNK` rows,
    each validated and written inside one transaction: any bad row and nothing is kept. The
    importer's ``validate`` sees one chunk at a time, with the earlier chunks already written in the
    transaction (so a duplicate of an earlier chunk is found in the database). ``progress`` gets the
    number of bytes read so far."""
    importer = registry.importer(kind)
    if importer is None:
        kinds = ", ".join(registry.kinds) or "none: no loaded pack imports CSV files"
        raise InvalidInput("kind", f"unknown kind {kind!r}; the loaded packs import {kinds}")
    raw = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    line = 1
    try:
        rows = read_rows(text, importer.columns)
        total = written = 0
        errors: list[tuple[int, str, str]] = []
        with writing() as txn:
            while chunk := list(islice(rows, CHUNK)):
                total += len(chunk)
                line = chunk[-1][0]
                errors += [(n, "row", row["__error__"]) for n, row in chunk if "__error__" in row]
                try:
                    cleaned, bad = importer.validate(workspace.id, [(n, r) for n, r in chunk if "__error__" not in r])
                    errors += bad
                    # written even after an error (all is rolled back then): later chunks' duplicates of
                    # these rows are found in the database as always
                    written += importer.write(workspace.id, cleaned)
                except Exception as exc:  # the pack's code failed, not the file: nothing is written
                    txn.rollback()
                    pack = registry.pack_of_kind(kind)
                    log.exception("tool pack %r failed to import %s", pack, kind)
                    raise PoggioError(
                        f"the {pack} pack failed while importing {kind} ({type(exc).__name__}: "
                        f"{exc}); nothing was imported"
                    ) from None
                if len(errors) > MAX_ERRORS:
                    break  # enough to show; nothing will be kept
                if progress is not None:
                    progress(raw.tell())
            if errors:
                txn.rollback()
                return ImportReport(kind, total, 0, sorted(errors))
            audit.record("data.imported", actor, workspace, target=kind, rows=written)
    except UnicodeDecodeError as exc:
        raise InvalidInput("file", f"not UTF-8 (near line {line}, byte {exc.start} of a block)") from None
    return ImportReport(kind, total, written, [])
