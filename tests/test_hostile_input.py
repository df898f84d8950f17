"""Hostile and broken export files: each gives one clear error, or a quarantined row
with its reason, and nothing else is lost.

File-level damage (truncation, encoding, a renamed column) is an `ExportFileError`
naming the file (and the column), and the stream's files load in one transaction,
so nothing of that stream lands. Row-level damage (a value that does not parse or
is implausible) quarantines that row with its reason while every other row loads.
Defaults as in tests/test_row_rules.py: as_of 2025-03-31, go-live 2025-01-01,
monthly periods, USD base.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
import yaml

from connectors.files.reader import ExportFileError
from pipelines.config import load_settings
from pipelines.warehouse import open_with_raw
from tests.conftest import ACCOUNTS, CRM_ROI, DEAL_COLUMNS, deal, gl, rows, run_pipeline
from tests.test_row_rules import period, quarantined, staged, staged_ids

REPO = Path(__file__).resolve().parent.parent
HEADER = ",".join(DEAL_COLUMNS)
GOOD = "G1,Good deal,A1,U1,default,closedwon,true,true,1000,USD,2025-01-05,2025-01-20,"
GOOD2 = "G2,Other deal,A1,U1,default,open,false,false,500,USD,2025-01-06,,"


def _csv_line(row: dict, columns: list[str] = DEAL_COLUMNS) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([row.get(c, "") for c in columns])
    return buffer.getvalue()


def write_config(tmp_path: Path, **settings: object) -> Path:
    (tmp_path / "finance_gl.csv").write_text(
        "entry_id,posted_on,account,description,vendor,amount,currency\n"
        "GL1,2025-01-10,6100,CRM licence,Acme CRM,100,USD\n",
        encoding="utf-8",
    )
    config = {
        "as_of": "2025-03-31", "go_live": "2025-01-01", "baseline_months": 12,
        "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
        "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
        **settings,
    }
    path = tmp_path / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def land(tmp_path: Path):
    """Write export files byte for byte into tmp_path/exports and run the pipeline on them."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def _land(files: dict[str, bytes | str], **settings: object) -> duckdb.DuckDBPyConnection:
        folder = tmp_path / "exports"
        folder.mkdir(exist_ok=True)
        for name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (folder / name).write_bytes(data)
        con = run_pipeline(load_settings(write_config(tmp_path, **settings)))
        opened.append(con)
        return con

    yield _land
    for con in opened:
        con.close()


def file_error(land, files: dict[str, bytes | str], tmp_path: Path) -> str:
    """The ExportFileError of a load, after checking that no deal row landed."""
    with pytest.raises(ExportFileError) as error:
        land(files)
    message = str(error.value)
    assert "\n" not in message, message
    with open_with_raw(tmp_path / "crm_roi.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.deals").fetchone()[0] == 0
        assert con.execute(
            "SELECT count(*) FROM raw.loaded_files WHERE stream = 'deals'"
        ).fetchone()[0] == 0
    return message


# --- damaged files: one clear error naming the file, nothing of the stream loaded ---------------


def test_last_line_cut_inside_a_quoted_field_is_an_error_naming_the_file(land, tmp_path):
    content = f'{HEADER}\n{GOOD}\nG3,"Acme, Inc. renewal'   # the export stopped mid-field
    message = file_error(land, {"deals.csv": content}, tmp_path)
    assert message.startswith("deals.csv: cannot be read as CSV: "), message
    assert "quote" in message.lower(), message


def test_last_line_cut_mid_row_is_an_error_naming_the_file_and_line(land, tmp_path):
    content = f"{HEADER}\n{GOOD}\n{GOOD2}\nG3,Cut deal,A1,U1,def"
    message = file_error(land, {"deals.csv": content}, tmp_path)
    assert message.startswith("deals.csv: cannot be read as CSV: CSV Error on Line: 4"), message


def test_truncated_delta_file_keeps_the_snapshot_out_too(land, tmp_path):
    # The stream is one transaction: a damaged delta does not leave a half-updated history.
    message = file_error(
        land,
        {"deals.csv": f"{HEADER}\n{GOOD}\n", "deals_2025-02-01.csv": f'{HEADER}\nG2,"cut'},
        tmp_path,
    )
    assert message.startswith("deals_2025-02-01.csv: "), message


def test_zero_byte_file_is_an_error_naming_it(land, tmp_path):
    message = file_error(land, {"deals.csv": b""}, tmp_path)
    assert message == "deals.csv: the file is empty"


def test_header_only_file_loads_zero_rows(land):
    con = land({"deals.csv": f"{HEADER}\n"})
    assert staged_ids(con) == []
    assert quarantined(con) == []
    assert con.execute(
        "SELECT file_name, row_count FROM raw.loaded_files WHERE stream = 'deals'"
    ).fetchall() == [("deals.csv", 0)]
    assert period(con, "2025-01-01")["deals_created"] == 0


def test_latin1_file_is_an_error_naming_it(land, tmp_path):
    content = f"{HEADER}\nG1,Café Lumière,A1,U1,default,open,false,false,1,EUR,2025-01-05,,\n"
    message = file_error(land, {"deals.csv": content.encode("latin-1")}, tmp_path)
    assert message.startswith("deals.csv: not UTF-8"), message
    assert message.endswith("re-export it as UTF-8")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_byte_order_mark_is_an_error_naming_it(land, tmp_path, codec):
    content = f"{HEADER}\n{GOOD}\n".encode(codec)
    message = file_error(land, {"deals.csv": content}, tmp_path)
    assert message == (
        "deals.csv: not UTF-8, looks like UTF-16 without a byte-order mark; re-export it as UTF-8"
    )


def test_binary_file_with_a_csv_name_is_an_error_naming_it(land, tmp_path):
    content = HEADER.encode() + b"\n" + b"G1,\x00\x00\x00\x01,A1\n"
    message = file_error(land, {"deals.csv": content}, tmp_path)
    assert message == "deals.csv: not UTF-8, looks like binary (NUL bytes); re-export it as UTF-8"


def test_renamed_required_column_is_one_message_naming_column_and_file(land, tmp_path):
    header = HEADER.replace("created_at", "create_date")
    message = file_error(land, {"deals.csv": f"{header}\n{GOOD}\n"}, tmp_path)
    assert message == (
        f"deals.csv: column 'created_at' (deals.created_at) is missing; the file has: "
        f"{header.replace(',', ', ')}; did you mean 'create_date'?"
    )


def test_a_missing_column_suggests_a_header_other_exports_use_for_it(land, tmp_path):
    # 'Opened' is not spelled like created_at, but CRMs export the creation date under that name.
    header = HEADER.replace("created_at", "Opened")
    message = file_error(land, {"deals.csv": f"{header}\n{GOOD}\n"}, tmp_path)
    assert message.endswith("; did you mean 'Opened'?")


def test_schema_drift_in_a_later_delta_names_that_file_and_column(land, tmp_path):
    drifted = HEADER.replace("is_won", "won")
    message = file_error(
        land,
        {"deals.csv": f"{HEADER}\n{GOOD}\n", "deals_2025-02-01.csv": f"{drifted}\n{GOOD2}\n"},
        tmp_path,
    )
    assert message.startswith(
        "deals_2025-02-01.csv: column 'is_won' (deals.is_won) is missing; the file has: deal_id, "
    ), message


def test_extra_columns_are_ignored(land):
    header = f"notes,{HEADER},amount_eur"
    con = land({"deals.csv": f'{header}\n"x, y",{GOOD},999\nz,{GOOD2},1\n'})
    assert staged_ids(con) == ["G1", "G2"]
    assert [r["amount"] for r in rows(con, "SELECT amount FROM staging.deals ORDER BY deal_id")] == [
        1000.0, 500.0]
    assert quarantined(con) == []


def test_repeated_header_that_is_read_is_an_error_naming_it(land, tmp_path):
    # Which of two "amount" columns is the amount? Guessing would be silent data loss.
    message = file_error(land, {"deals.csv": f"{HEADER},amount\n{GOOD},7\n"}, tmp_path)
    assert message == "deals.csv: column 'amount' appears 2 times; keep one and re-export"


def test_blank_and_repeated_unread_headers_are_ignored(land):
    # Spreadsheets save trailing empty columns as ",,": blank, repeated headers.
    con = land({"deals.csv": f"{HEADER},,,note,note\n{GOOD},,,a,b\n{GOOD2},,,c,d\n"})
    assert staged_ids(con) == ["G1", "G2"]
    assert quarantined(con) == []


def test_quotes_and_embedded_newlines_load_as_text(land):
    name = 'He said "hi", then\r\nleft;\nagain'
    row = deal("Q1", "2025-01-05", "2025-01-20", won=True, deal_name=name, owner_id='U"1')
    con = land({"deals.csv": HEADER + "\n" + _csv_line(row) + GOOD + "\n"})
    (q1,) = staged(con, "Q1")
    assert (q1["deal_name"], q1["owner_id"]) == (name, 'U"1')
    assert staged_ids(con) == ["G1", "Q1"]
    assert period(con, "2025-01-01")["deals_won"] == 2


def test_one_megabyte_field_loads_intact(land):
    huge = "x" * (1 << 20)
    con = land({"deals.csv": HEADER + "\n" + _csv_line(deal("H1", "2025-01-05", deal_name=huge))
                + GOOD + "\n"})
    (h1,) = staged(con, "H1")
    assert h1["deal_name"] == huge
    assert staged_ids(con) == ["G1", "H1"]


# --- values: quarantined with their reason, every other row loads --------------------------------


def _one_bad_row(project, bad: dict) -> dict:
    con = project(deals=[deal("G1", "2025-01-05", "2025-01-20", won=True, amount="1000"), bad,
                         deal("G2", "2025-01-06")])
    assert staged_ids(con) == ["G1", "G2"]
    (rejected,) = quarantined(con)
    jan = period(con, "2025-01-01")
    assert (jan["deals_created"], jan["deals_won"], jan["revenue_won"]) == (2, 1, 1000.0)
    return rejected


def test_currency_symbol_and_thousands_separator_parse(project):
    con = project(deals=[deal("N1", "2025-01-05", "2025-01-20", won=True, amount="$1,234.50"),
                         deal("N2", "2025-01-05", "2025-01-20", won=True, amount="USD 2,000")])
    assert quarantined(con) == []
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(3234.5)


# European decimal commas are rejected, not guessed: "1,234" means 1234 to one reader
# and 1.234 to another, and a silently wrong amount is worse than a quarantined one.
@pytest.mark.parametrize("amount", ["1.234,50 €", "1234,50", "1,5", "1 234.50", "1_000", "0x10",
                                    "12abc", "--5", "1,23,456"])
def test_amounts_that_do_not_parse_are_quarantined(project, amount):
    rejected = _one_bad_row(project, deal("X1", "2025-01-07", "2025-01-21", won=True,
                                          amount=amount))
    assert (rejected["key"], rejected["reason"]) == ("X1", "unparseable amount")


@pytest.mark.parametrize("amount", ["NaN", "nan", "inf", "-inf", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinite_amounts_are_quarantined(project, amount):
    rejected = _one_bad_row(project, deal("X1", "2025-01-07", "2025-01-21", won=True,
                                          amount=amount))
    assert (rejected["key"], rejected["reason"]) == ("X1", "unparseable amount")


def test_nan_gl_amount_is_quarantined(project):
    con = project(finance=[gl("C1", "2025-01-10", "6100", "100"), gl("C2", "2025-01-10", "6100", "NaN")])
    (rejected,) = quarantined(con, "finance_gl")
    assert (rejected["key"], rejected["reason"]) == ("C2", "unparseable amount")
    assert period(con, "2025-01-01")["crm_cost"] == pytest.approx(100.0)


def test_negative_amounts_are_kept_and_reduce_revenue(project):
    # Policy: credit notes and refunds are real, so a negative amount is data, not an error.
    con = project(deals=[deal("P1", "2025-01-05", "2025-01-20", won=True, amount="1000"),
                         deal("R1", "2025-01-06", "2025-01-25", won=True, amount="-250.00"),
                         deal("R2", "2025-01-06", "2025-01-26", won=True, amount="(50)")])
    assert quarantined(con) == []
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(700.0)


@pytest.mark.parametrize("created", ["03/15/2025", "15.03.2025", "2025/03/15", "March 15, 2025",
                                     "20250315", "2025-02-30", "yesterday"])
def test_dates_in_other_formats_are_quarantined_in_a_canonical_file(project, created):
    rejected = _one_bad_row(project, deal("X1", created))
    assert (rejected["key"], rejected["reason"]) == ("X1", "unparseable created_at")


# Policy (sql/macros.sql implausible_ts): business timestamps outside [1900-01-01, 2100-01-01)
# are placeholders or typos ("0001-01-01", "9999-12-31", "2205" for "2025"); quarantined.
@pytest.mark.parametrize(("bad", "reason"), [
    (deal("X1", "0001-01-01"), "implausible created_at"),
    (deal("X1", "1899-12-31T23:59:59Z"), "implausible created_at"),
    (deal("X1", "9999-12-31"), "implausible created_at"),
    (deal("X1", "2025-01-07", "2205-01-21", won=True), "implausible closed_at"),
    (deal("X1", "2025-01-07", updated_at="9999-12-31T00:00:00Z"), "implausible updated_at"),
    (deal("X1", "2100-01-01"), "implausible created_at"),
], ids=["year-1", "1899", "9999", "closed-2205", "updated-9999", "2100-boundary"])
def test_implausible_timestamps_are_quarantined(project, bad, reason):
    rejected = _one_bad_row(project, bad)
    assert (rejected["key"], rejected["reason"]) == ("X1", reason)


def test_old_and_far_future_but_plausible_timestamps_are_kept(project):
    con = project(deals=[deal("O1", "1900-01-01"), deal("O2", "1965-06-01T12:00:00Z"),
                         deal("F1", "2099-12-31T23:59:59Z")])
    assert quarantined(con) == []
    assert staged_ids(con) == ["F1", "O1", "O2"]
    # Outside the run's periods they count nowhere.
    assert con.execute("SELECT sum(deals_created) FROM kpi.periodic").fetchone()[0] == 0


def test_implausible_updated_at_does_not_win_over_a_valid_version(project):
    # A "9999" updated_at cannot be ordered: it is judged alone, the valid version stays.
    con = project(deals=[
        deal("D1", "2025-01-05", amount="100", updated_at="2025-01-10T00:00:00Z"),
        deal("D1", "2025-01-05", amount="999", updated_at="9999-12-31"),
    ])
    (d1,) = staged(con, "D1")
    assert d1["amount"] == 100.0
    (rejected,) = quarantined(con)
    assert (rejected["key"], rejected["reason"]) == ("D1", "implausible updated_at")


def test_customer_and_gl_dates_follow_the_same_plausibility_window(project):
    con = project(
        finance=[gl("C1", "2025-01-10", "6100", "100"), gl("C2", "0001-01-01", "6100", "5")],
        files={"customers": (["customer_id", "name", "started_at", "churned_at", "mrr"], [
            ["K1", "Old", "1965-01-01", "", "10"],
            ["K2", "Bad", "2024-01-01", "9999-12-31", "10"],
        ])},
    )
    assert [(r["key"], r["reason"]) for r in quarantined(con, "finance_gl")] == [
        ("C2", "implausible posted_on")]
    assert [(r["key"], r["reason"]) for r in quarantined(con, "customers")] == [
        ("K2", "implausible churned_at")]


def test_duplicate_key_with_equal_updated_at_later_row_wins_deterministically(tmp_path):
    # The same instant written two ways; the later line wins, in every run and every rebuild.
    first = deal("D1", "2025-01-05", amount="100", updated_at="2025-01-10T00:00:00Z")
    second = deal("D1", "2025-01-05", amount="200", updated_at="2025-01-10T01:00:00+01:00")
    delta = deal("D2", "2025-01-05", amount="300", updated_at="2025-01-10T00:00:00Z")
    delta_later = deal("D2", "2025-01-05", amount="400", updated_at="2025-01-10")
    winners = []
    for attempt in range(2):
        folder = tmp_path / f"run{attempt}"
        (folder / "exports").mkdir(parents=True)
        (folder / "exports" / "deals.csv").write_text(
            HEADER + "\n" + _csv_line(first) + _csv_line(second) + _csv_line(delta), "utf-8")
        (folder / "exports" / "deals_2025-02-01.csv").write_text(
            HEADER + "\n" + _csv_line(delta_later), "utf-8")
        settings = load_settings(write_config(folder))
        for _ in range(2):  # a re-run over the same folder changes nothing
            with run_pipeline(settings) as con:
                winners.append(con.execute(
                    "SELECT deal_id, amount FROM staging.deals ORDER BY deal_id").fetchall())
                assert quarantined(con) == []
    assert winners == [[("D1", 200.0), ("D2", 400.0)]] * 4


# --- CSV formula injection --------------------------------------------------------------------


FORMULAS = ['=HYPERLINK("http://x","click")', "+1+2", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1"]


def test_formula_text_loads_as_plain_text_and_query_csv_escapes_it(project, tmp_path):
    con = project(deals=[
        deal(f"F{i}", "2025-01-05", "2025-01-20", won=True, amount="-5", deal_name=text)
        for i, text in enumerate(FORMULAS)
    ] + [deal("F9", "2025-01-05", deal_name="Plain = fine")])
    names = dict(con.execute("SELECT deal_id, deal_name FROM staging.deals").fetchall())
    assert [names[f"F{i}"] for i in range(len(FORMULAS))] == FORMULAS
    con.close()

    done = subprocess.run(
        [CRM_ROI, "query", "--db", str(tmp_path / "crm_roi.duckdb"), "--format", "csv",
         "SELECT deal_id, deal_name, amount, created_at FROM staging.deals ORDER BY deal_id"],
        cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = list(csv.reader(io.StringIO(done.stdout.decode("utf-8"), newline="")))
    assert out[0] == ["deal_id", "deal_name", "amount", "created_at"]
    by_id = {r[0]: r for r in out[1:]}
    assert [by_id[f"F{i}"][1] for i in range(len(FORMULAS))] == ["'" + f for f in FORMULAS]
    assert by_id["F9"][1] == "Plain = fine"
    # Numbers are data, not formulas: a negative amount is written as a number.
    assert by_id["F0"][2] == "-5.0"
    assert by_id["F0"][3] == "2025-01-05 00:00:00"


# --- a very large file is streamed, not read into memory ---------------------------------------


LARGE_BYTES = 300 << 20
STREAM_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from pipelines.config import load_settings
    from pipelines.raw_files import load_stream, stream_inputs
    from pipelines.warehouse import connect
    settings = load_settings(Path(sys.argv[1]))
    with connect(settings.duckdb_path, settings) as con:
        con.execute("SET memory_limit = '128MB'")
        (spec,) = stream_inputs(settings, "deals")
        result = load_stream(con, spec)
        count = con.execute("SELECT count(*), count(DISTINCT deal_id) FROM raw.deals").fetchone()
    # VmHWM, this process's own peak: ru_maxrss would keep the parent's peak across the fork
    # and exec, so it read as pytest's memory whenever that was the larger.
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"rows": result.rows_loaded, "count": list(count), "maxrss_kb": peak_kb}))
""")


@pytest.mark.slow
def test_very_large_file_is_streamed_under_a_memory_cap(tmp_path):
    demo = (REPO / "data" / "sample" / "deals.csv").read_text(encoding="utf-8").splitlines()
    header, body = demo[0], [line.split(",", 1)[1] for line in demo[1:]]
    folder = tmp_path / "exports"
    folder.mkdir()
    written = rows_written = 0
    with (folder / "deals.csv").open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(header + "\n")
        while written < LARGE_BYTES:
            chunk = "".join(f"L{rows_written + i:09d},{line}\n" for i, line in enumerate(body))
            handle.write(chunk)
            written += len(chunk)
            rows_written += len(body)
    size = (folder / "deals.csv").stat().st_size
    assert size >= LARGE_BYTES

    config = write_config(tmp_path)
    limit = 1536 << 20
    done = subprocess.run(
        [sys.executable, "-c", STREAM_CHILD, str(config), str(limit)],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = yaml.safe_load(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == rows_written
    assert result["count"] == [rows_written, rows_written]
    # Resident memory (Python and DuckDB included, ~90 MB before any work) stays below the
    # file's size: the read is streamed in 32 MB buffers and the landing table spills to disk.
    # (With DuckDB's default 256 MB CSV buffers this was over twice the file's size.)
    # 1.9M rows as Python objects would take several GB; streamed, the process stays near its
    # import footprint (~150 MB) plus DuckDB's 128 MB limit, whatever the file's size (244 MB here).
    assert result["maxrss_kb"] * 1024 < 400 << 20, (result, size)
