"""Reliability: .csv data files are read strictly and never misread silently (dln/problem.py, the rule
in load_problem's docstring and the README).

Before: a UTF-8 byte-order mark made the first sample look like a header (dropped); pandas' numeric
header ``0,1,2,...`` was read as a sample; a malformed first row was dropped as a "header"; an empty
file leaked numpy's "input contained no data" warning.  Every case below goes through the API and the
command line (exit 2, one line naming 'data' and the line of the file).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from reliability_helpers import assert_user_error, budget, call, count
from dln.errors import DLNError
from dln.problem import load_problem

TABLE = np.array([[1.5, -2.0, 0.25], [3.0, 4.0, -1.0], [0.0, 1e-3, 2.0]])  # features..., label


def _text(rows, header=None, newline="\n"):
    lines = ([header] if header is not None else []) + [",".join(repr(float(v)) for v in r) for r in rows]
    return newline.join(lines) + newline


#: (id, file content, expected table or None for an error, texts the error names)
GOOD = [
    ("plain", _text(TABLE), TABLE),
    ("named-header", _text(TABLE, "x1,x2,y"), TABLE),
    ("bom-no-header", "\ufeff" + _text(TABLE), TABLE),  # before: the first sample was dropped as a header
    ("bom-and-header", "\ufeff" + _text(TABLE, "x1,x2,y"), TABLE),
    ("crlf", _text(TABLE, "a,b,label", newline="\r\n"), TABLE),
    ("blank-and-comment-lines", "# made by hand\n\n" + _text(TABLE, "a,b,y") + "\n\n", TABLE),
    ("spaces-around-fields", " 1.5 , -2.0,0.25\n3.0,4.0 ,-1.0\n0,0.001, 2\n", TABLE),
    ("integers", "1,2,3\n4,5,6\n", np.array([[1.0, 2, 3], [4, 5, 6]])),
    ("no-final-newline", _text(TABLE)[:-1], TABLE),
    ("one-sample", "1,2,3\n", np.array([[1.0, 2.0, 3.0]])),
    ("header-named-like-numbers-but-not", "x0,x1,y\n1,2,3\n", np.array([[1.0, 2.0, 3.0]])),
    ("exponents", "1e0,-2E+0,2.5e-1\n", np.array([[1.0, -2.0, 0.25]])),
]
BAD = [
    ("pandas-default-header", "0,1,2\n" + _text(TABLE), ["line 1", "pandas", "header=False"]),
    ("pandas-index-column", ",x1,y\n0,1.5,2\n1,3,4\n", ["line 1", "index=False"]),
    ("pandas-index-and-default-header", ",0,1\n0,1.5,2\n", ["line 1", "index=False"]),
    ("malformed-first-row", "1,x,3\n" + _text(TABLE), ["line 1", "'x'"]),  # before: dropped as a header
    ("header-with-an-empty-name", "a,,y\n1,2,3\n", ["line 1", "empty name"]),
    ("empty-file", "", ["no samples"]),  # before: numpy's warning on stderr
    ("only-blank-lines", "\n\n  \n", ["no samples"]),
    ("only-comments", "# nothing\n# here\n", ["no samples"]),
    ("header-only", "x1,x2,y\n", ["header and no samples"]),
    ("ragged-line", _text(TABLE) + "1,2\n", ["line 4", "2 field(s)", "3"]),
    ("trailing-comma", "1,2,3,\n4,5,6,\n", ["line 1"]),
    ("empty-field", "1,2,3\n4,,6\n", ["line 2", "field 2"]),
    ("text-field", _text(TABLE, "a,b,y") + "1,two,3\n", ["line 5", "'two'"]),
    ("digit-separators", "1_000,2,3\n", ["line 1", "'1_000'"]),
    ("hex", "0x10,2,3\n", ["line 1", "'0x10'"]),
    ("non-ascii-digits", "١,2,3\n", ["line 1"]),
    ("quoted-numbers", '"1","2","3"\n', ["line 1"]),
    ("semicolons", "1;2;3\n4;5;6\n", ["at least 2 columns", "commas"]),
    ("latin-1", b"x,\xe9t\xe9,y\n1,2,3\n", ["line 1", "UTF-8"]),
    ("utf-16", "x,y\n1,2\n".encode("utf-16"), ["UTF-8"]),
    ("one-column", "1\n2\n", ["at least 2 columns"]),
    ("nan", "1,nan,3\n", ["'X'", "finite"]),
    ("inf-label", "1,2,inf\n", ["'y'", "finite"]),
]


def _write(tmp_path, name, content):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize("content, table", [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_good_csv_is_read_exactly(tmp_path, content, table):
    path = _write(tmp_path, "good", content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = load_problem(path)
    np.testing.assert_array_equal(np.column_stack([P.X, P.y]), table)
    code, out, err = call(["predict", "--data", path, "--potential", "l2", "--json"])
    assert code in (0, 2) and "Traceback" not in err  # (l2 needs y in range(X): 2 for some tables)
    count("csv: files read exactly")


@pytest.mark.parametrize("content, texts", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_csv_is_an_error_naming_the_line(tmp_path, content, texts):
    path = _write(tmp_path, "bad", content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not leak
        with pytest.raises(DLNError) as info:
            load_problem(path)
    for text in texts:
        assert text in str(info.value), (text, str(info.value))
    for command in ("simulate", "sweep"):
        extra = ["--out", tmp_path / "o", "--workers", "1"] if command == "sweep" else []
        named = [] if texts[0] in ("'X'", "'y'") else ["'data'"]  # a non-finite entry names its array
        assert_user_error(*call([command, "--data", path, *extra]), *named, *texts)
        assert not (tmp_path / "o").exists()
    count("csv: malformed files refused")


# -- round trips: whatever a user's tools write is read back exactly ---------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300)


@budget(40)
@given(data=st.data(), n=st.integers(1, 6), m=st.integers(2, 5))
def test_round_trip_of_numpy_and_pandas_writers(tmp_path_factory, data, n, m):
    table = np.array(data.draw(st.lists(st.lists(finite, min_size=m, max_size=m), min_size=n, max_size=n)))
    # a first sample 0,1,...,m-1 written as integers is pandas' default header: refused as ambiguous
    assume(not np.array_equal(table[0], np.arange(m)))
    writer = data.draw(st.sampled_from(["savetxt-17g", "savetxt-18e", "savetxt-header", "pandas-named", "pandas-bom"]))
    buf = io.StringIO()
    if writer.startswith("savetxt"):
        fmt = "%.17g" if writer == "savetxt-17g" else "%.18e"  # both round-trip float64 exactly
        header = ",".join(f"c{j}" for j in range(m)) if writer == "savetxt-header" else ""
        np.savetxt(buf, table, delimiter=",", fmt=fmt, header=header, comments="")
        text = buf.getvalue()
    else:
        import pandas as pd

        pd.DataFrame(table, columns=[f"x{j}" for j in range(m - 1)] + ["y"]).to_csv(buf, index=False,
                                                                                   float_format="%.17g")
        text = ("\ufeff" if writer == "pandas-bom" else "") + buf.getvalue()
    path = tmp_path_factory.mktemp("rt") / "t.csv"
    path.write_text(text, encoding="utf-8")
    P = load_problem(path)
    np.testing.assert_array_equal(np.column_stack([P.X, P.y]), table)
    count(f"csv: round trips ({writer})")
