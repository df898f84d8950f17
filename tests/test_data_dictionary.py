"""The data dictionary covers every output column, and the README shows it."""

from pathlib import Path

from pipelines.data_dictionary import DICTIONARY
from tests.conftest import deal, gl, rows

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_output_column_is_described_and_documented(project):
    con = project(deals=[deal("D1", "2025-01-05", "2025-01-20", won=True)],
                  finance=[gl("G1", "2025-01-10", "6100", "100")])
    for table, described in DICTIONARY.items():
        schema, name = table.split(".")
        actual = [r["column_name"] for r in rows(
            con, "SELECT column_name FROM information_schema.columns "
                 "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, name])]
        assert actual == list(described), table
        assert f"#### `{table}`" in README
        for column in described:
            assert f"| `{column}` |" in README, (table, column)
