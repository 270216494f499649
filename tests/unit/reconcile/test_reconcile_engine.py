"""The hash-diff engine and the file reader: every seeded drift is found, nothing else."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.reconcile.engine import compare
from accord.reconcile.files import compare_files, parse_compare
from accord.reconcile.model import DiscrepancyClass, FieldKind, FieldSpec, MalformedInput
from accord.reconcile.sides import MemorySide
from accord.reconcile.values import looks_like_money, money_value

HEADER = ["id", "account", "amount", "currency", "status"]


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(dict(zip(HEADER, row, strict=True))) + "\n")
    return path


def _rows(count: int) -> list[list[str]]:
    return [
        [f"INV-{i:04d}", f"ACC-{i % 7}", f"{i}.{i % 100:02d}", "EUR", "open"] for i in range(count)
    ]


def test_clean_exports_have_no_discrepancies(tmp_path: Path) -> None:
    rows = _rows(200)
    result = compare_files(
        _write_csv(tmp_path / "l.csv", rows), _write_jsonl(tmp_path / "r.jsonl", rows), "id"
    )
    assert result.clean
    assert result.counts == {c.value: 0 for c in DiscrepancyClass}
    assert (result.left_rows, result.right_rows) == (200, 200)


def test_every_seeded_drift_class_is_found_and_nothing_else(tmp_path: Path) -> None:
    left = _rows(100)
    right = [list(r) for r in left]
    right[3][2] = "999.00"  # amount
    right[5][4] = "paid"  # status
    right[7][1] = "ACC-other"  # plain field
    del right[9]  # missing on the right
    right.append(["INV-extra", "ACC-1", "1.00", "EUR", "open"])  # orphan
    result = compare_files(
        _write_csv(tmp_path / "l.csv", left), _write_csv(tmp_path / "r.csv", right), "id"
    )
    found = {(d.key, d.category, d.field) for d in result.discrepancies}
    assert found == {
        ("INV-0003", DiscrepancyClass.AMOUNT_MISMATCH, "amount"),
        ("INV-0005", DiscrepancyClass.STATUS_MISMATCH, "status"),
        ("INV-0007", DiscrepancyClass.FIELD_MISMATCH, "account"),
        ("INV-0009", DiscrepancyClass.MISSING, None),
        ("INV-extra", DiscrepancyClass.ORPHAN, None),
    }
    amount = next(d for d in result.discrepancies if d.key == "INV-0003")
    assert (amount.left, amount.right) == (Decimal("3.03"), Decimal("999.00"))
    assert amount.to_json()["difference"] == "995.97"
    assert result.counts["amount_mismatch"] == 1 and result.counts["orphan"] == 1
    totals = {t.field: (t.left, t.right) for t in result.totals}
    assert set(totals) == {"amount"}


def test_money_columns_compare_as_decimals_not_text(tmp_path: Path) -> None:
    left = _write_csv(tmp_path / "l.csv", [["A", "x", "1,234.50", "EUR", "open"]])
    right = _write_csv(tmp_path / "r.csv", [["A", "x", "1234.5", "EUR", "open"]])
    assert compare_files(left, right, "id").clean


def test_codes_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    left = _write_csv(tmp_path / "l.csv", [["A", "007", "1", "EUR", "open"]])
    right = _write_csv(tmp_path / "r.csv", [["A", "7", "1", "EUR", "open"]])
    result = compare_files(left, right, "id")
    assert [(d.field, d.category) for d in result.discrepancies] == [
        ("account", DiscrepancyClass.FIELD_MISMATCH)
    ]


def test_a_money_hint_forces_decimal_comparison(tmp_path: Path) -> None:
    left = _write_csv(
        tmp_path / "l.csv", [["A", "x", "N/A", "EUR", "open"], ["B", "x", "2", "EUR", "open"]]
    )
    right = _write_csv(
        tmp_path / "r.csv", [["A", "x", "N/A", "EUR", "open"], ["B", "x", "2.00", "EUR", "open"]]
    )
    assert not compare_files(left, right, "id", parse_compare("amount:text")).clean
    assert compare_files(left, right, "id", parse_compare("amount:money")).clean


def test_white_space_and_empty_cells_do_not_count_as_drift(tmp_path: Path) -> None:
    left = _write_csv(tmp_path / "l.csv", [["A", " Acme ", "", "EUR", "open"]])
    right = _write_jsonl(tmp_path / "r.jsonl", [["A", "Acme", None, "EUR", "open"]])  # type: ignore[list-item]
    assert compare_files(left, right, "id").clean


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.5", Decimal("1234.5")),
        ("1,234.50", Decimal("1234.50")),
        ("$1,234.50", Decimal("1234.50")),
        ("-€12", Decimal("-12")),
        ("(1,000.00)", Decimal("-1000.00")),
        ("12.34567", "12.34567"),
        ("1e3", "1e3"),
        ("N/A", "N/A"),
        ("", None),
    ],
)
def test_the_money_rule(text: str, expected: object) -> None:
    assert money_value(text) == expected


def test_leading_zero_values_do_not_look_like_money() -> None:
    assert not looks_like_money("007")
    assert looks_like_money("0.07") and looks_like_money("1,000.5")


@pytest.mark.parametrize(
    ("content", "line", "column", "message"),
    [
        ("id,a\nA,1\nB\n", 3, "2 (a)", "expected 2 columns, found 1"),
        ("id,a\nA,1,9\n", 2, "3", "expected 2 columns, found 3"),
        ("id,a\n,1\n", 2, "id", "empty key"),
        ('id,a\nA,"x"y\n', 2, None, "unreadable CSV"),
        ("id,id\n", 1, "2", "appears twice"),
    ],
)
def test_malformed_csv_names_file_line_and_column(
    tmp_path: Path, content: str, line: int, column: str | None, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    good = tmp_path / "good.csv"
    good.write_text("id,a\nA,1\n")
    with pytest.raises(MalformedInput) as caught:
        compare_files(bad, good, "id")
    error = caught.value
    assert (error.source, error.line, error.column) == (str(bad), line, column)
    assert message in str(error) and str(error).startswith(f"{bad}:{line}")


def test_malformed_json_lines_name_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "A", "a": 1}\n{"id": "B", "a": }\n')
    with pytest.raises(MalformedInput) as caught:
        compare_files(bad, bad, "id")
    assert (caught.value.line, caught.value.column) == (2, "18")


def test_a_missing_key_column_is_refused_naming_it(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("id,a\nA,1\n")
    with pytest.raises(MalformedInput, match="no key column 'ref'"):
        compare_files(good, good, "ref")


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("id,a\nA,1\nA,2\n")
    good = tmp_path / "good.csv"
    good.write_text("id,a\nA,1\n")
    with pytest.raises(MalformedInput, match="duplicate key 'A'"):
        compare_files(dup, good, "id")
    with pytest.raises(MalformedInput, match="duplicate key 'A'"):
        compare_files(good, dup, "id")


def test_totals_per_group_disagree_even_when_rows_are_only_missing() -> None:
    fields = [FieldSpec("amount", FieldKind.MONEY)]
    left = MemorySide("l", {"a": {"amount": 100, "g": "x"}, "b": {"amount": 5, "g": "y"}})
    right = MemorySide("r", {"a": {"amount": 100, "g": "x"}})
    result = compare(left, right, fields, group_by=["g"])
    assert [(t.group, t.left, t.right) for t in result.totals] == [(("y",), 5, 0)]


_record = st.fixed_dictionaries(
    {
        "name": st.text(alphabet="abc ", max_size=4),
        "amount": st.integers(-10_000, 10_000),
        "status": st.sampled_from(["open", "paid", "void"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(
    base=st.dictionaries(
        st.text(alphabet="KXYZ0123", min_size=1, max_size=4), _record, max_size=30
    ),
    changed=st.dictionaries(
        st.text(alphabet="KXYZ0123", min_size=1, max_size=4), _record, max_size=10
    ),
)
def test_the_keys_reported_are_exactly_the_keys_that_differ(
    base: dict[str, dict[str, object]], changed: dict[str, dict[str, object]]
) -> None:
    fields = [
        FieldSpec("name"),
        FieldSpec("amount", FieldKind.MONEY),
        FieldSpec("status", FieldKind.STATUS),
    ]
    right = {**base, **changed}
    result = compare(MemorySide("l", base), MemorySide("r", right), fields)
    norm = {k: (str(v["name"]).strip() or None, v["amount"], v["status"]) for k, v in base.items()}
    theirs = {
        k: (str(v["name"]).strip() or None, v["amount"], v["status"]) for k, v in right.items()
    }
    expected = {k for k in set(norm) | set(theirs) if norm.get(k) != theirs.get(k)}
    assert {d.key for d in result.discrepancies} == expected
    assert compare(MemorySide("l", base), MemorySide("r", dict(base)), fields).clean


def test_a_million_rows_a_side_with_seeded_drift(tmp_path: Path) -> None:
    count = 1_000_000
    left, right = tmp_path / "left.csv", tmp_path / "right.csv"
    with left.open("w", newline="") as lf, right.open("w", newline="") as rf:
        lw, rw = csv.writer(lf), csv.writer(rf)
        lw.writerow(HEADER)
        rw.writerow(HEADER)
        for i in range(count):
            row = [f"K{i:07d}", f"A{i % 991}", f"{i % 5000}.{i % 100:02d}", "EUR", "open"]
            lw.writerow(row)
            if i % 250_000 == 1:
                continue  # missing
            if i % 250_000 == 2:
                row[2] = "0.01"
            elif i % 250_000 == 3:
                row[4] = "void"
            elif i % 250_000 == 4:
                row[1] = "other"
            elif i % 250_000 == 5:
                row[2] = row[2] + "0"  # same amount, other text: not a drift
            rw.writerow(row)
        rw.writerow(["K-orphan", "A1", "1", "EUR", "open"])
    result = compare_files(left, right, "id")
    assert (result.left_rows, result.right_rows) == (count, count - 4 + 1)
    assert result.counts == {
        "missing": 4,
        "orphan": 1,
        "field_mismatch": 4,
        "amount_mismatch": 4,
        "status_mismatch": 4,
    }
