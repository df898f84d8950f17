"""The fake HubSpot of variant (e), served from its own process so its CPU is not the client's.

It is `connectors.fakes.hubspot.FakeHubSpot` seeded from a canonical export
folder, with two changes for a benchmark, both stated in RESULTS.md:

* HubSpot's rate limits are lifted (burst, search and daily budgets): at the
  real 100 requests per 10 s every client is held to the same 500 deals/s and
  the comparison would measure the limit, not the client.
* The list endpoint costs O(page) instead of O(records): the fake filters and
  sorts the whole store on every page, which at 100k deals makes a sync
  quadratic and measures the fake. The store does not change during a sync
  (and no faults are injected), so the sorted records are kept and each page
  is cut from them by id.

The harness talks to it over stdin/stdout, one line each way: it prints one
JSON line when serving (`base_url`, live and archived deal counts); then
`reset` clears the request log (answer `ok`) and `log` answers the requests
since, as JSON. End of input stops it.

    BENCH_HUBSPOT_TOKEN=... python -m bench.fake_server FOLDER
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import sys
from collections import Counter
from pathlib import Path

from werkzeug.wrappers import Request, Response

from connectors.fakes.hubspot import FakeCompany, FakeDeal, FakeHubSpot

UNLIMITED = 10**12


class FrozenHubSpot(FakeHubSpot):
    """FakeHubSpot for a store that no longer changes: list pages are cut from a cached, id-sorted list."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._sorted: dict[tuple[str, bool], tuple[list, list[int]]] = {}
        self._window: tuple[int, int] | None = None  # (after id, limit) of the list request being answered

    def _list(self, request: Request, object_type: str) -> Response:
        # dispatch() holds the fake's lock around every handler, so one request at a time sets the window.
        try:
            after = request.args.get("after")
            start = int(base64.b64decode(after).decode().strip()) if after else 0
            self._window = (start, int(request.args.get("limit", "10")))
        except ValueError:
            self._window = None  # let the fake answer its own 400
        try:
            return super()._list(request, object_type)
        finally:
            self._window = None

    def _records(self, object_type: str, archived: bool) -> list[FakeDeal] | list[FakeCompany]:
        key = (object_type, archived)
        if key not in self._sorted:
            records = super()._records(object_type, archived)
            self._sorted[key] = (records, [r.id for r in records])
        records, ids = self._sorted[key]
        if self._window is None:
            return records
        start, limit = self._window
        first = bisect.bisect_right(ids, start)
        return records[first:first + limit + 1]  # one more than the page: the fake then knows a next page exists


def request_log(fake: FakeHubSpot) -> dict:
    """The requests since the last reset: total, and by method and path (query left out)."""
    paths = Counter(f"{method} {target.split('?')[0]}" for _, method, target in fake.log)
    return {"requests": len(fake.log), "by_path": dict(paths)}


def main() -> None:
    folder = Path(sys.argv[1])
    fake = FrozenHubSpot.from_canonical(folder, token=os.environ["BENCH_HUBSPOT_TOKEN"], burst_limit=UNLIMITED,
                                        search_per_second=UNLIMITED, daily_limit=UNLIMITED)
    archived = sum(1 for deal in fake.deals.values() if deal.archived_at is not None)
    with fake.running():
        print(json.dumps({"base_url": fake.base_url, "live": len(fake.deals) - archived, "archived": archived}),
              flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                fake.log.clear()
                print("ok", flush=True)
            elif line.strip() == "log":
                print(json.dumps(request_log(fake)), flush=True)


if __name__ == "__main__":
    main()
