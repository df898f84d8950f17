"""What an API connector yields: pages of canonical rows plus the cursor they cover.

Connectors map each vendor's records onto the same canonical text columns the
export-file profiles produce (see connectors/files/profiles.py), so staging
treats API and file data alike. A page is committed in one transaction together
with its cursor, so a sync killed between pages resumes where it stopped, and a
page re-read after a crash replaces (never duplicates) the rows it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from connectors.http import RequestStats


@dataclass(frozen=True)
class TableRows:
    """Rows for one raw table; they replace this source's rows with the same `key_column` values."""

    key_column: str
    rows: list[dict[str, str | None]]
    # Records the CRM no longer holds at all (merged into another): their stored rows are
    # removed, so an incremental chain ends exactly where a full sync of the final state does.
    deleted_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page:
    """One unit of work: rows for one or more raw tables, and the cursor safe to store after them."""

    tables: dict[str, TableRows] = field(default_factory=dict)
    cursor: str | None = None


class ApiSource(Protocol):
    """A live CRM connector. `read(stream, None)` is a full sync; a cursor continues from it."""

    streams: tuple[str, ...]
    stats: RequestStats

    def read(self, stream: str, cursor: str | None) -> Iterator[Page]: ...

    def close(self) -> None: ...
