"""bench.scale's pure parts: sizes, the fitted cost per million rows, the disk a size needs, the table and picture."""

from __future__ import annotations

import pytest

from bench import scale


def test_sizes_read_like_a_person_writes_them() -> None:
    assert scale.parse_sizes("1M,4M,16M") == [1_000_000, 4_000_000, 16_000_000]
    assert scale.parse_sizes("200K, 1.5M,5000") == [200_000, 1_500_000, 5000]
    for bad in ("", "1M,zero", "-1M", "0"):
        with pytest.raises(SystemExit, match="--sizes"):
            scale.parse_sizes(bad)


def test_the_fit_is_seconds_per_million_rows_plus_a_fixed_cost() -> None:
    slope, fixed = scale.fit([(1.0, 3.0), (4.0, 9.0), (16.0, 33.0)])
    assert slope == pytest.approx(2.0) and fixed == pytest.approx(1.0)
    assert scale.fit([(2.0, 5.0)]) == (2.5, 0.0)


def test_disk_grows_with_the_rows_and_16m_fits_this_kind_of_machine() -> None:
    assert scale.disk_needed_gb(4_000_000) == pytest.approx(4 * scale.disk_needed_gb(1_000_000))
    assert 10 < scale.disk_needed_gb(16_000_000) < 60


def sized(rows: int, k: float) -> dict:
    seconds = {op: k * (i + 1) for i, op in enumerate(scale.OPERATIONS)}
    return {
        "rows": rows,
        "seconds": seconds,
        "database_bytes": rows * 250,
        "wal_bytes_of_the_fill": rows * 300,
        "pitr_seconds_per_gb_of_wal": 10.0,
    }


def test_table_and_picture(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    results = [sized(1_000_000, 1.0), sized(4_000_000, 4.0)]
    fitted = scale.fits(results)
    assert fitted["fill"]["seconds_per_million_rows"] == pytest.approx(1.0)
    assert fitted["pitr"]["seconds_per_million_rows"] == pytest.approx(4.0)
    scale.print_table(results, fitted)
    out = capsys.readouterr().out
    assert "1M" in out and "4M" in out and "s per 1M rows" in out
    reladiff_line = next(line for line in out.splitlines() if line.startswith("reladiff / drtopo"))
    assert "1.2x" in reladiff_line  # compare (reladiff) is the 6th operation, compare (drtopo) the 5th: 6/5
    png = tmp_path / "scale.png"
    scale.write_png(results, fitted, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
