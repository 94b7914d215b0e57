"""Tests of the scoring client: argument parsing and local checks, then end to end on Triton.

The tests without a server point the client at a port where nothing listens: an input error must
be reported (exit 2) before any connection is tried. The ``triton`` tests start the real local
server on free ports against ``model_repository/`` and compare with in-process onnxruntime.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from export.config import DATA_CSV, MODEL_REPOSITORY, PUBLISHED_ONNX
from export.data import Dataset, load_dataset, read_split
from preprocess_ensemble.client import (
    CSV_COLUMNS,
    DEFAULT_BATCH_SIZE,
    CreditScoringClient,
    InputError,
    ScoringError,
    applicant_from_mapping,
    batch_bounds,
    build_parser,
    is_client_error,
    load_catalogue,
    load_contract,
    main,
    read_csv,
    write_csv,
)
from preprocess_ensemble.features import ContractViolation, FeatureContract
from preprocess_ensemble.triton_server import TritonServer, TritonServerError, free_port

CONTRACT = load_contract()
ID, TARGET = CONTRACT.spec["id_column"], CONTRACT.spec["target"]


def _printed(out: str) -> dict[str, str]:
    """``key: value`` lines of ``score-one``'s plain output (first value per key)."""
    fields: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


@pytest.fixture(scope="module")
def data_rows() -> list[dict[str, str]]:
    """The first rows of the UCI data file as read by csv (strings, file column order)."""
    with gzip.open(DATA_CSV, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        return [row for _, row in zip(range(20), reader, strict=False)]


@pytest.fixture
def applicant(data_rows: list[dict[str, str]]) -> dict[str, int]:
    """One real applicant as {feature: value}."""
    return {name: int(data_rows[0][name]) for name in CONTRACT.names}


@pytest.fixture
def nowhere() -> str:
    """A URL where nothing listens (any connection attempt fails fast)."""
    return f"127.0.0.1:{free_port()}"


def _write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _data_csv(path: Path, data_rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(data_rows[0])
    return _write_rows(path, header, [[row[c] for c in header] for row in data_rows])


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("error: ")
    return err


# ---------------------------------------------------------------------------------------------
# Argument parsing and local checks (no server)


def test_parser_defaults() -> None:
    args = build_parser(CONTRACT).parse_args(["score-csv", "in.csv", "out.csv"])
    assert args.batch_size == DEFAULT_BATCH_SIZE == 256
    assert args.concurrency == 1
    assert (args.protocol, args.model, args.url, args.timeout) == (
        "http",
        "credit_scoring",
        None,
        60,
    )
    assert (args.input, args.output) == (Path("in.csv"), Path("out.csv"))


def test_default_url_depends_on_protocol() -> None:
    for protocol, port in (("http", 8000), ("grpc", 8001)):
        client = CreditScoringClient(protocol=protocol)
        assert client.url == f"localhost:{port}"
        client.close()
    with pytest.raises(ValueError, match="protocol"):
        CreditScoringClient(protocol="udp")


def test_feature_flags_cover_the_contract(applicant: dict[str, int]) -> None:
    argv = ["score-one"] + [f"--{k}={v}" for k, v in applicant.items()]
    args = build_parser(CONTRACT).parse_args(argv)
    values = {name: getattr(args, f"feature:{name}") for name in CONTRACT.names}
    row = applicant_from_mapping(values, CONTRACT)
    np.testing.assert_array_equal(row, [[applicant[n] for n in CONTRACT.names]])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score-one", "--AGE", "abc"], "argument --AGE: 'abc' is not a number"),
        (["score-csv", "a.csv", "b.csv", "--batch-size", "0"], "'0' is not a positive integer"),
        (["score-csv", "a.csv", "b.csv", "--concurrency", "x"], "'x' is not a positive integer"),
        (["score-csv", "a.csv", "b.csv", "--timeout", "-1"], "positive number of seconds"),
        (["score-one", "--protocol", "udp"], "invalid choice: 'udp'"),
        (["score-one", "--json", "{}", "--json-file", "a.json"], "not allowed with argument"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_flags_are_named_before_connecting(
    applicant: dict[str, int], nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    given = {k: v for k, v in applicant.items() if k not in ("SEX", "PAY_AMT6")}
    argv = ["score-one", "--url", nowhere] + [f"--{k}={v}" for k, v in given.items()]
    assert main(argv) == 2
    assert _error_line(capsys) == (
        "error: missing features: SEX, PAY_AMT6 (the contract's 23 features are required)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"SEX": 3},
            "applicant: feature SEX (column 1) = 3 is not an allowed code (allowed: 1, 2)",
        ),
        ({"AGE": 17}, "feature AGE (column 4) = 17 is outside the allowed range [18, 100]"),
        ({"LIMIT_BAL": 1000.5}, "feature LIMIT_BAL (column 0) = 1000.5 is not a whole number"),
        ({"BILL_AMT1": "3913"}, "feature BILL_AMT1 must be a number, got '3913'"),
        ({"PAY_0": None}, "feature PAY_0 must be a number, got None"),
        ({"SEX": True}, "feature SEX must be a number, got True"),
        ({"INCOME": 1}, "unknown keys: INCOME"),
        ({"AGE": 10, "PAY_2": 11}, "feature AGE (column 4) = 10 is outside the allowed range"),
    ],
)
def test_json_applicant_is_checked_locally(
    applicant: dict[str, int],
    change: dict[str, object],
    message: str,
    nowhere: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = json.dumps(applicant | change)
    assert main(["score-one", "--url", nowhere, "--json", text]) == 2
    assert message in _error_line(capsys)


def test_several_bad_values_are_counted(applicant: dict[str, int]) -> None:
    with pytest.raises(InputError, match=r"AGE .* \(2 invalid values in 1 row"):
        applicant_from_mapping(applicant | {"AGE": 10, "PAY_2": 11}, CONTRACT)


def test_json_source_errors(
    applicant: dict[str, int], nowhere: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["score-one", "--url", nowhere]
    assert main([*base, "--json", "{not json"]) == 2
    assert "invalid JSON" in _error_line(capsys)
    assert main([*base, "--json", json.dumps(list(applicant.values()))]) == 2
    assert "expected a JSON object" in _error_line(capsys)
    assert main([*base, "--json", json.dumps(applicant), "--AGE", "30"]) == 2
    assert "either as JSON or as flags, not both (flags: AGE)" in _error_line(capsys)
    assert main([*base, "--json-file", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in _error_line(capsys)
    (tmp_path / "bad.json").write_text(json.dumps(applicant | {"MARRIAGE": 4}))
    assert main([*base, "--json-file", str(tmp_path / "bad.json")]) == 2
    assert "feature MARRIAGE (column 3) = 4 is not an allowed code" in _error_line(capsys)


def test_valid_applicant_reaches_the_network(
    applicant: dict[str, int], nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid applicant (ID allowed) passes the local checks: the failure is the connection."""
    text = json.dumps(applicant | {ID: 1})
    assert main(["score-one", "--url", nowhere, "--json", text, "--timeout", "5"]) == 1
    assert f"cannot reach Triton at {nowhere} (http)" in _error_line(capsys)
    assert main(["score-one", "--url", nowhere, "--protocol", "grpc", "--json", text]) == 1
    assert "StatusCode.UNAVAILABLE" in _error_line(capsys)


def test_read_csv_any_column_order_with_id_and_target(
    tmp_path: Path, data_rows: list[dict[str, str]]
) -> None:
    header = [TARGET, *reversed(CONTRACT.names), ID]
    table = read_csv(_data_csv(tmp_path / "in.csv", data_rows, header), CONTRACT)
    assert table.header == header
    assert table.rows == [[row[c] for c in header] for row in data_rows]
    expected = [[float(row[n]) for n in CONTRACT.names] for row in data_rows]
    np.testing.assert_array_equal(table.features, expected)
    assert table.lines == list(range(2, len(data_rows) + 2))


def test_read_csv_without_optional_columns_and_with_blank_lines(
    tmp_path: Path, data_rows: list[dict[str, str]]
) -> None:
    path = _data_csv(tmp_path / "in.csv", data_rows[:3], list(CONTRACT.names))
    path.write_text(path.read_text().replace("\n", "\n\n", 1) + "\n")
    table = read_csv(path, CONTRACT)
    assert len(table.rows) == 3 and table.lines == [3, 4, 5]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h, r: (h[:3] + h[4:], [x[:3] + x[4:] for x in r]), r"missing: EDUCATION\)"),
        (lambda h, r: ([*h, "score"], [[*x, "1"] for x in r]), r"unexpected: score\)"),
        (lambda h, r: ([*h, "AGE"], [[*x, "30"] for x in r]), r"duplicated: AGE\)"),
        (lambda h, r: (h, r[:4] + [r[4][:-1]] + r[5:]), "line 6: expected 25 fields .* got 24"),
        (
            lambda h, r: (h, [*r[:6], [*r[6][:5], " ", *r[6][6:]], *r[7:]]),
            r"data row 7 \(line 8\): column AGE = ' ' is not a number",
        ),
        (
            lambda h, r: (h, [*r[:8], [*r[8][:2], "0", *r[8][3:]], *r[9:]]),
            r"data row 9 \(line 10\): feature SEX \(column 1\) = 0 is not an allowed code",
        ),
        (
            lambda h, r: (h, [*r[:2], [*r[2][:1], "nan", *r[2][2:]], *r[3:]]),
            r"data row 3 \(line 4\): feature LIMIT_BAL \(column 0\) is NaN",
        ),
        (lambda h, r: (h, []), "has a header but no data rows"),
    ],
)
def test_bad_csv_fails_before_sending(
    edit: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]],
    message: str,
    tmp_path: Path,
    data_rows: list[dict[str, str]],
    nowhere: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    header = list(data_rows[0])
    header_out, rows = edit(header, [[row[c] for c in header] for row in data_rows])
    path = _write_rows(tmp_path / "in.csv", header_out, rows)
    with pytest.raises(InputError, match=message):
        read_csv(path, CONTRACT)
    output = tmp_path / "out.csv"
    assert main(["score-csv", str(path), str(output), "--url", nowhere]) == 2
    assert str(path) in _error_line(capsys)
    assert not output.exists()


def test_all_invalid_values_are_counted(tmp_path: Path, data_rows: list[dict[str, str]]) -> None:
    header = list(data_rows[0])
    rows = [[row[c] for c in header] for row in data_rows]
    for row in rows[3:6]:
        row[header.index("EDUCATION")] = "9"
    path = _write_rows(tmp_path / "in.csv", header, rows)
    with pytest.raises(
        InputError, match=r"data row 4 .* \(3 invalid values in 3 row\(s\) in all\)"
    ):
        read_csv(path, CONTRACT)


def test_empty_csv(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_csv(tmp_path / "empty.csv", CONTRACT)
    with pytest.raises(InputError, match="cannot read"):
        read_csv(tmp_path / "missing.csv", CONTRACT)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz"])
def test_write_csv_round_trips_float32(
    name: str, tmp_path: Path, data_rows: list[dict[str, str]]
) -> None:
    table = read_csv(_data_csv(tmp_path / "in.csv", data_rows), CONTRACT)
    probabilities = np.random.default_rng(0).random(len(table.rows)).astype(np.float32)
    probabilities[0] = 1.5e-7  # scientific notation still round-trips
    write_csv(tmp_path / name, table, probabilities, "probability")
    opener = gzip.open if name.endswith(".gz") else open
    with opener(tmp_path / name, "rt", newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0] == [*table.header, "probability"]
    assert [r[:-1] for r in written[1:]] == table.rows
    np.testing.assert_array_equal(np.array([r[-1] for r in written[1:]], np.float32), probabilities)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.csv", name])  # no temp


def test_batch_bounds() -> None:
    assert batch_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert batch_bounds(4, 4) == [(0, 4)]
    assert batch_bounds(0, 3) == []
    for n, size in ((1, 1), (1024, 256), (4500, 1024), (1023, 1024)):
        bounds = batch_bounds(n, size)
        assert len(bounds) == math.ceil(n / size)
        assert all(0 < stop - start <= size for start, stop in bounds)
        assert [b for _, b in bounds[:-1]] == [a for a, _ in bounds[1:]] and bounds[-1][1] == n
    with pytest.raises(ValueError):
        batch_bounds(3, 0)


@pytest.mark.parametrize(
    ("status", "client_error"),
    [
        ("400", True),
        ("404", True),
        ("500", False),
        ("503", False),
        (None, False),
        ("StatusCode.INVALID_ARGUMENT", True),
        ("StatusCode.NOT_FOUND", True),
        ("StatusCode.UNAVAILABLE", False),
        ("StatusCode.DEADLINE_EXCEEDED", False),
        ("StatusCode.INTERNAL", False),
    ],
)
def test_server_error_classification(status: str | None, client_error: bool) -> None:
    assert is_client_error(InferenceServerException("x", status=status)) is client_error


def test_score_checks_shape_and_contract_before_connecting(nowhere: str) -> None:
    client = CreditScoringClient(nowhere, timeout=5)
    try:
        with pytest.raises(ContractViolation, match=r"expected shape \[n_rows, 23\]"):
            client.score(np.zeros((2, 22)))
        with pytest.raises(ContractViolation, match="no rows"):
            client.score(np.zeros((0, 23)))
        with pytest.raises(ContractViolation, match="row 0: feature SEX"):
            client.score(np.zeros((1, 23)))
        rows = np.tile(np.maximum(CONTRACT.lower, 0), (2, 1))  # valid: lowest values >= 0
        with pytest.raises(ScoringError, match="cannot reach Triton") as error:
            client.score(rows)
        assert not error.value.client_error
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# End to end against the real local Triton


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """Triton serving model_repository/ on free ports, for this module."""
    try:
        srv = TritonServer(
            MODEL_REPOSITORY, log_path=tmp_path_factory.mktemp("triton") / "tritonserver.log"
        )
    except TritonServerError as exc:
        pytest.skip(str(exc))
    with srv:
        yield srv


@pytest.fixture(scope="module")
def holdout_set() -> Dataset:
    """All holdout rows (IDs, raw features, target) in split order."""
    return load_dataset().take(np.asarray(read_split()["holdout"]))


@pytest.fixture(scope="module")
def holdout50(holdout_set: Dataset) -> Dataset:
    """The first 50 holdout rows."""
    return Dataset(holdout_set.ids[:50], holdout_set.features[:50], holdout_set.target[:50])


@pytest.fixture(scope="module")
def onnx_session() -> ort.InferenceSession:
    return ort.InferenceSession(str(PUBLISHED_ONNX), providers=["CPUExecutionProvider"])


def _expected(session: ort.InferenceSession, raw: np.ndarray) -> np.ndarray:
    """Probabilities [n] from the published ONNX model (raw features in), in process."""
    return session.run(["probability"], {"features": raw.astype(np.float32)})[0][:, 0]


def _url(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


PROTOCOLS = pytest.mark.parametrize("protocol", ["http", "grpc"])


@pytest.mark.triton
@PROTOCOLS
def test_score_one_json_matches_onnxruntime(
    server: TritonServer,
    holdout50: Dataset,
    onnx_session: ort.InferenceSession,
    protocol: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = _expected(onnx_session, holdout50.features)
    base = ["score-one", "--url", _url(server, protocol), "--protocol", protocol]
    for i in range(0, 50, 7):
        applicant = {n: int(v) for n, v in zip(CONTRACT.names, holdout50.features[i], strict=True)}
        assert main([*base, "--json", json.dumps(applicant)]) == 0
        printed = _printed(capsys.readouterr().out)
        assert abs(float(printed["probability"]) - expected[i]) <= 1e-6
        assert printed["decision"] in ("approve", "refer", "decline")
        assert 300 < int(printed["score"]) < 900 and printed["policy"].count("@") == 1

    applicant = {ID: int(holdout50.ids[1])} | {
        n: int(v) for n, v in zip(CONTRACT.names, holdout50.features[1], strict=True)
    }
    assert main([*base, "--json", json.dumps(applicant), "--output-json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {
        "model",
        ID,
        "probability",
        "pd",
        "score",
        "decision",
        "reason_codes",
        "policy",
    }
    assert payload["model"] == "credit_scoring" and payload[ID] == holdout50.ids[1]
    assert abs(payload["probability"] - expected[1]) <= 1e-6
    catalogue = load_catalogue(CONTRACT)
    assert 1 <= len(payload["reason_codes"]) <= 4
    for reason in payload["reason_codes"]:
        value = holdout50.features[1, catalogue.codes.index(reason["code"])]
        assert reason["text"] == catalogue.text(reason["code"], value) != ""


@pytest.mark.triton
@PROTOCOLS
def test_score_one_flags_and_json_file(
    server: TritonServer,
    holdout50: Dataset,
    onnx_session: ort.InferenceSession,
    protocol: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = _expected(onnx_session, holdout50.features[2:3])[0]
    values = {n: int(v) for n, v in zip(CONTRACT.names, holdout50.features[2], strict=True)}
    base = ["score-one", "--url", _url(server, protocol), "--protocol", protocol]
    assert main([*base, *[f"--{k}={v}" for k, v in values.items()]]) == 0
    assert abs(float(_printed(capsys.readouterr().out)["probability"]) - expected) <= 1e-6
    (tmp_path / "applicant.json").write_text(json.dumps(values))
    assert main([*base, "--json-file", str(tmp_path / "applicant.json")]) == 0
    assert abs(float(_printed(capsys.readouterr().out)["probability"]) - expected) <= 1e-6


@pytest.mark.triton
@PROTOCOLS
@pytest.mark.parametrize(("batch_size", "concurrency"), [(256, 1), (16, 3)])
def test_score_csv_matches_onnxruntime(
    server: TritonServer,
    holdout50: Dataset,
    onnx_session: ort.InferenceSession,
    protocol: str,
    batch_size: int,
    concurrency: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    header = [ID, *CONTRACT.names, TARGET]
    rows = [
        [str(i), *(str(int(v)) for v in x), str(y)]
        for i, x, y in zip(holdout50.ids, holdout50.features, holdout50.target, strict=True)
    ]
    source = _write_rows(tmp_path / "holdout50.csv", header, rows)
    output = tmp_path / "scored.csv"
    argv = ["score-csv", str(source), str(output), "--url", _url(server, protocol)]
    argv += ["--protocol", protocol, "--batch-size", str(batch_size)]
    argv += ["--concurrency", str(concurrency), "--no-progress"]
    assert main(argv) == 0
    assert "scored 50 rows" in capsys.readouterr().err
    with open(output, newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0] == [*header, *CSV_COLUMNS]
    width = len(header)
    assert [r[:width] for r in written[1:]] == rows  # same rows, same order, carried unchanged
    got = np.array([float(r[width]) for r in written[1:]])
    np.testing.assert_allclose(got, _expected(onnx_session, holdout50.features), rtol=0, atol=1e-6)
    codes = set(load_catalogue(CONTRACT).codes) | {""}
    for record in written[1:]:
        cells = dict(zip(CSV_COLUMNS, record[width:], strict=True))
        assert cells["decision"] in ("approve", "refer", "decline")
        assert {cells[f"reason_code_{k}"] for k in range(1, 5)} <= codes


def _ensemble_requests(server: TritonServer) -> tuple[int, int]:
    """(successful requests, rows) served by the credit_scoring ensemble so far."""
    with httpclient.InferenceServerClient(server.http_url) as client:
        stats = client.get_inference_statistics("credit_scoring")["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"]), int(stats["inference_count"])


@pytest.mark.triton
@PROTOCOLS
def test_client_splits_at_max_batch_size(
    server: TritonServer, holdout_set: Dataset, onnx_session: ort.InferenceSession, protocol: str
) -> None:
    with CreditScoringClient(_url(server, protocol), protocol, concurrency=2) as client:
        assert client.max_batch_size == 1024  # read from the ensemble's config
        before = _ensemble_requests(server)
        started = time.monotonic()
        got = client.score(holdout_set.features)
        print(f"\n{protocol}: {len(got)} holdout rows in {time.monotonic() - started:.2f}s")
        expected = (before[0] + math.ceil(len(got) / 1024), before[1] + len(got))
        for _ in range(40):  # Triton counts an ensemble request just after it answered
            after = _ensemble_requests(server)
            if after == expected:
                break
            time.sleep(0.05)
        with pytest.raises(ValueError, match="between 1 and 1024"):
            client.score(holdout_set.features[:2], batch_size=1025)
    assert got.shape == (len(holdout_set.ids),) and got.dtype == np.float32
    np.testing.assert_allclose(
        got, _expected(onnx_session, holdout_set.features), rtol=0, atol=1e-6
    )
    assert after[0] - before[0] == math.ceil(len(got) / 1024)
    assert after[1] - before[1] == len(got)


@pytest.mark.triton
@PROTOCOLS
def test_decide_returns_every_output_in_order(
    server: TritonServer, holdout50: Dataset, protocol: str
) -> None:
    with CreditScoringClient(_url(server, protocol), protocol, concurrency=3) as client:
        decided = client.decide(holdout50.features, batch_size=7)
        probabilities = client.score(holdout50.features)
        alone = client.decide(holdout50.features[9:10])
    n = len(holdout50.ids)
    np.testing.assert_array_equal(decided.probability, probabilities)
    assert decided.pd.shape == (n,) and decided.pd.dtype == np.float32
    assert decided.score.shape == (n,) and decided.score.dtype == np.int32
    assert decided.reason_codes.shape == (n, 4)
    assert set(decided.decision) <= {"approve", "refer", "decline"}
    assert len(set(decided.policy)) == 1
    assert (np.diff(decided.score[np.argsort(decided.pd)]) <= 0).all()  # points fall as PD rises
    for name in ("probability", "pd", "score", "decision", "reason_codes", "policy"):
        assert np.array_equal(getattr(alone, name)[0], getattr(decided, name)[9]), name
    catalogue = load_catalogue(CONTRACT)
    row = decided.row(9, catalogue, holdout50.features[9])
    assert row["score"] == int(decided.score[9]) and row["decision"] == decided.decision[9]
    for reason, code in zip(
        row["reason_codes"], [c for c in decided.reason_codes[9] if c], strict=True
    ):
        assert reason == {
            "code": code,
            "text": catalogue.text(code, holdout50.features[9][catalogue.codes.index(code)]),
        }
    with pytest.raises(ValueError, match="both"):
        decided.row(9, catalogue)


@pytest.mark.triton
@PROTOCOLS
def test_server_rejection_is_a_client_error(
    server: TritonServer, holdout50: Dataset, protocol: str
) -> None:
    rows = holdout50.features[:40].copy()
    rows[37, CONTRACT.names.index("EDUCATION")] = 9  # second request (rows 32-39), its row 5
    with (
        CreditScoringClient(_url(server, protocol), protocol) as client,
        pytest.raises(ScoringError) as error,
    ):
        client.score(rows, batch_size=32, check=False)
    assert error.value.client_error
    message = str(error.value)
    assert "\n" not in message
    assert "input rows 32-39" in message
    assert "row 5: feature EDUCATION (column 2) = 9 is not an allowed code" in message
    assert ("(400)" if protocol == "http" else "(StatusCode.INVALID_ARGUMENT)") in message


@pytest.mark.triton
@PROTOCOLS
def test_unknown_model_exits_2_with_one_line(
    server: TritonServer,
    holdout50: Dataset,
    protocol: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    applicant = {n: int(v) for n, v in zip(CONTRACT.names, holdout50.features[0], strict=True)}
    argv = ["score-one", "--url", _url(server, protocol), "--protocol", protocol]
    assert main([*argv, "--model", "no_such_model", "--json", json.dumps(applicant)]) == 2
    assert "unknown model: 'no_such_model'" in _error_line(capsys)


@pytest.mark.triton
def test_batch_size_above_the_model_limit(
    server: TritonServer,
    holdout50: Dataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    header = list(CONTRACT.names)
    rows = [[str(int(v)) for v in x] for x in holdout50.features]
    source = _write_rows(tmp_path / "in.csv", header, rows)
    argv = ["score-csv", str(source), str(tmp_path / "out.csv"), "--url", server.http_url]
    assert main([*argv, "--batch-size", "1025"]) == 2
    assert "--batch-size 1025 exceeds the max_batch_size 1024" in _error_line(capsys)
    assert not (tmp_path / "out.csv").exists()


def test_contract_is_the_packaged_one() -> None:
    """The client checks with the same contract the ensemble's preprocess step publishes."""
    published = FeatureContract.from_json(
        MODEL_REPOSITORY / "preprocess" / "1" / "feature_contract.json"
    )
    assert published.spec == CONTRACT.spec
