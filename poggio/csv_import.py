"""``poggio import KIND FILE.csv``: validate every row first, then write all of them or none."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass

from poggio import audit
from poggio.audit import Actor
from poggio.db import writing
from poggio.errors import InvalidInput, PoggioError
from poggio.models import Workspace
from poggio.plugins import PackRegistry

log = logging.getLogger(__name__)

MAX_ROWS = 2_000_000
MAX_REPORTED = 50


@dataclass
class ImportReport:
    kind: str
    rows: int
    imported: int
    errors: list[tuple[int, str, str]]


def read_rows(text: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("file", "the file is empty; the first line must be the header") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise InvalidInput("header", f"line 1: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
    index = {c: header.index(c) for c in columns}
    rows = []
    for record in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            rows.append((line, {"__error__": f"{len(record)} fields, the header has {len(header)}"}))
            continue
        rows.append((line, {c: record[i] for c, i in index.items()}))
        if len(rows) > MAX_ROWS:
            raise InvalidInput("file", f"more than {MAX_ROWS:,} rows; split the file")
    return rows


def import_csv(registry: PackRegistry, workspace: Workspace, kind: str, data: bytes, actor: Actor) -> ImportReport:
    importer = registry.importer(kind)
    if importer is None:
        kinds = ", ".join(registry.kinds) or "none: no loaded pack imports CSV files"
        raise InvalidInput("kind", f"unknown kind {kind!r}; the loaded packs import {kinds}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("file", f"not UTF-8 (byte {exc.start})") from None
    rows = read_rows(text, importer.columns)
    shape_errors = [(line, "row", row["__error__"]) for line, row in rows if "__error__" in row]
    good = [(line, row) for line, row in rows if "__error__" not in row]
    with writing() as txn:
        try:
            cleaned, errors = importer.validate(workspace.id, good)
            errors = sorted(shape_errors + list(errors))
            if errors:
                txn.rollback()
                return ImportReport(kind, len(rows), 0, errors)
            written = importer.write(workspace.id, cleaned)
        except Exception as exc:  # the pack's code failed, not the file: nothing is written
            txn.rollback()
            pack = registry.pack_of_kind(kind)
            log.exception("tool pack %r failed to import %s", pack, kind)
            raise PoggioError(f"the {pack} pack failed while importing {kind} ({type(exc).__name__}: {exc}); "
                              "nothing was imported") from None
        audit.record("data.imported", actor, workspace, target=kind, rows=written)
    return ImportReport(kind, len(rows), written, [])
