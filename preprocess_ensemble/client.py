"""Score applicants with the ``credit_scoring`` Triton ensemble over HTTP or gRPC.

Library: :class:`CreditScoringClient` sends raw feature rows ``[n, 23]`` (contract order);
``score`` returns the default probabilities, ``decide`` every output of the ensemble (calibrated
PD, scorecard points, decision, reason codes, policy) as :class:`Decisions`. Large inputs are
split into requests of at most the model's ``max_batch_size`` (read from the server's model
config). CLI::

    python -m preprocess_ensemble.client score-one --json '{"LIMIT_BAL": 20000, ...}'
    python -m preprocess_ensemble.client score-one --json-file applicant.json --output-json
    python -m preprocess_ensemble.client score-one --LIMIT_BAL 20000 --SEX 2 ... (all 23)
    python -m preprocess_ensemble.client score-csv IN.csv OUT.csv --batch-size 256 --concurrency 4

Common options: ``--url`` (default ``localhost:8000`` for HTTP, ``localhost:8001`` for gRPC),
``--protocol http|grpc``, ``--model credit_scoring``, ``--timeout`` (seconds).

``score-csv`` reads a CSV (optionally ``.gz``) with a header holding the 23 contract features in
any order plus, optionally, the contract's ID and target columns. Every row is checked against
the contract before anything is sent; the output holds the input rows unchanged, in the same
order, plus the columns ``probability``, ``pd``, ``score``, ``decision``, ``reason_code_1`` ..
``reason_code_4`` and ``policy``. Blank lines are skipped; nothing else is dropped. Reason-code
texts come from ``reason_codes.json`` (``score-one`` prints them).

Inputs are checked locally against ``feature_contract.json``; the server checks again.
Exit codes: 0 success; 2 bad input (usage, contract, CSV) or a request the server rejected as
invalid (HTTP 4xx, gRPC INVALID_ARGUMENT / NOT_FOUND ...); 1 server unreachable, timed out or
failed internally. Errors are printed as one line on stderr. Only numpy, the standard library,
tritonclient and tqdm are needed (no pandas), so it runs in the slim serving environment.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from preprocess_ensemble.decisioning import ReasonCatalogue
from preprocess_ensemble.features import ContractViolation, FeatureContract

CONTRACT_JSON = Path(__file__).resolve().parent / "feature_contract.json"
REASON_CODES_JSON = Path(__file__).resolve().parent / "reason_codes.json"
DEFAULT_MODEL = "credit_scoring"
INPUT_NAME = "features"
OUTPUT_NAME = "probability"
# Every output of the ensemble: name -> columns per row.
DECISION_OUTPUTS = {
    "probability": 1,
    "pd": 1,
    "score": 1,
    "decision": 1,
    "reason_codes": 4,
    "policy": 1,
}
CSV_COLUMNS = (
    "probability",
    "pd",
    "score",
    "decision",
    *(f"reason_code_{k}" for k in range(1, 5)),
    "policy",
)
DEFAULT_URLS = {"http": "localhost:8000", "grpc": "localhost:8001"}
DEFAULT_BATCH_SIZE = 256
DEFAULT_TIMEOUT = 60.0
PROTOCOLS = ("http", "grpc")
# gRPC status codes that mean "the request is wrong" (HTTP 4xx); everything else is a failure.
_GRPC_CLIENT_ERRORS = {
    "StatusCode.INVALID_ARGUMENT",
    "StatusCode.NOT_FOUND",
    "StatusCode.OUT_OF_RANGE",
    "StatusCode.FAILED_PRECONDITION",
    "StatusCode.ALREADY_EXISTS",
    "StatusCode.UNIMPLEMENTED",
    "StatusCode.PERMISSION_DENIED",
    "StatusCode.UNAUTHENTICATED",
}

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class InputError(ValueError):
    """The applicant or the CSV file does not match the contract; the message says where."""


class ScoringError(RuntimeError):
    """A request failed; ``client_error`` is True if the server rejected it as invalid.

    Attributes:
        client_error: True for HTTP 4xx / gRPC INVALID_ARGUMENT-like rejections (bad request),
            False when the server is unreachable, timed out or failed internally.
    """

    def __init__(self, message: str, client_error: bool) -> None:
        super().__init__(_one_line(message))
        self.client_error = client_error


def _one_line(message: str) -> str:
    """Collapse whitespace and newlines so a message prints as a single line."""
    return " ".join(str(message).split())


def is_client_error(exc: InferenceServerException) -> bool:
    """Return True if ``exc`` is a rejection of the request (HTTP 4xx or gRPC equivalent)."""
    status = str(exc.status() or "")
    return (status.isdigit() and status.startswith("4")) or status in _GRPC_CLIENT_ERRORS


def load_contract(path: str | os.PathLike[str] = CONTRACT_JSON) -> FeatureContract:
    """Load the feature contract shipped with this package (or another contract file)."""
    return FeatureContract.from_json(path)


def batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """Return ``(start, stop)`` slices covering ``n_rows`` rows in batches of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return [(start, min(start + batch_size, n_rows)) for start in range(0, n_rows, batch_size)]


class CreditScoringClient:
    """Client for the ``credit_scoring`` ensemble: raw rows in, default probabilities out.

    Example:
        >>> with CreditScoringClient("localhost:8000") as client:  # doctest: +SKIP
        ...     probabilities = client.score(rows)  # rows: [n, 23] in contract order
    """

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        *,
        model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = 1,
        contract: FeatureContract | None = None,
    ) -> None:
        """Create the connection (nothing is sent until the first call).

        Args:
            url: ``host:port``; defaults to ``localhost:8000`` (HTTP) / ``localhost:8001`` (gRPC).
            protocol: ``http`` or ``grpc``.
            model: Name of the ensemble to call.
            timeout: Seconds allowed for connecting and for each request.
            concurrency: Maximum number of requests in flight in :meth:`score`.
            contract: Feature contract for the local checks; defaults to the packaged one.
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.url = url or DEFAULT_URLS[protocol]
        self.protocol = protocol
        self.model = model
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.contract = contract or load_contract()
        self._max_batch_size: int | None = None
        self._client: httpclient.InferenceServerClient | grpcclient.InferenceServerClient
        if protocol == "http":
            self._client = httpclient.InferenceServerClient(
                self.url,
                concurrency=concurrency,
                connection_timeout=self.timeout,
                network_timeout=self.timeout,
            )
        else:
            self._client = grpcclient.InferenceServerClient(self.url)

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        """Run ``function``, turning transport and server errors into :class:`ScoringError`."""
        try:
            return function()
        except InferenceServerException as exc:
            detail = exc.message() or str(exc)
            status = f" ({exc.status()})" if exc.status() else ""
            raise ScoringError(
                f"{what} failed{status}: {detail}", client_error=is_client_error(exc)
            ) from None
        except TimeoutError:  # HTTP socket timeout (gRPC reports DEADLINE_EXCEEDED above)
            raise ScoringError(
                f"{what} failed: no answer from Triton at {self.url} ({self.protocol}) "
                f"within {self.timeout:g}s",
                client_error=False,
            ) from None
        except OSError as exc:  # connection refused or reset
            raise ScoringError(
                f"{what} failed: cannot reach Triton at {self.url} ({self.protocol}): "
                f"{type(exc).__name__}: {exc}",
                client_error=False,
            ) from None

    def model_config(self) -> dict[str, Any]:
        """Return the model's configuration as JSON (same layout for HTTP and gRPC)."""
        if isinstance(self._client, httpclient.InferenceServerClient):
            client = self._client
            return self._call(
                f"reading the config of model {self.model!r}",
                lambda: client.get_model_config(self.model),
            )
        grpc = self._client
        reply = self._call(
            f"reading the config of model {self.model!r}",
            lambda: grpc.get_model_config(self.model, as_json=True, client_timeout=self.timeout),
        )
        return reply["config"]

    @property
    def max_batch_size(self) -> int:
        """The model's ``max_batch_size``; the input config is checked on first use."""
        if self._max_batch_size is None:
            config = self.model_config()
            max_batch_size = int(config.get("max_batch_size", 0))
            inputs = {t["name"]: t for t in config.get("input", [])}
            spec = inputs.get(INPUT_NAME)
            dims = [int(d) for d in spec.get("dims", [])] if spec else []
            expected = [self.contract.n_features]
            if spec is None or spec.get("data_type") != "TYPE_FP32" or dims != expected:
                found = {n: (t.get("data_type"), t.get("dims")) for n, t in inputs.items()}
                raise ScoringError(
                    f"model {self.model!r} does not take input {INPUT_NAME!r} TYPE_FP32 dims "
                    f"{expected} (its inputs: {found})",
                    client_error=True,
                )
            if max_batch_size < 1:
                raise ScoringError(
                    f"model {self.model!r} has max_batch_size {max_batch_size}; "
                    "batched [n, 23] requests need max_batch_size >= 1",
                    client_error=True,
                )
            self._max_batch_size = max_batch_size
        return self._max_batch_size

    def _submit(
        self, rows: np.ndarray, offset: int = 0, outputs: Sequence[str] = (OUTPUT_NAME,)
    ) -> Callable[[], dict[str, np.ndarray]]:
        """Send one request; return a function that waits for and returns its ``outputs``.

        ``offset`` is the index of ``rows[0]`` in the caller's input, for error messages (the
        server numbers rows from 0 within each request).
        """
        what = f"request for input rows {offset}-{offset + len(rows) - 1} on model {self.model!r}"
        if isinstance(self._client, httpclient.InferenceServerClient):
            client = self._client
            inp = httpclient.InferInput(INPUT_NAME, list(rows.shape), "FP32")
            inp.set_data_from_numpy(rows)
            out = [httpclient.InferRequestedOutput(name) for name in outputs]
            if self.concurrency == 1:
                result = self._call(what, lambda: client.infer(self.model, [inp], outputs=out))
                return lambda: self._outputs(result, len(rows), outputs)
            request = self._call(what, lambda: client.async_infer(self.model, [inp], outputs=out))
            return lambda: self._outputs(self._call(what, request.get_result), len(rows), outputs)

        grpc = self._client
        ginp = grpcclient.InferInput(INPUT_NAME, list(rows.shape), "FP32")
        ginp.set_data_from_numpy(rows)
        gout = [grpcclient.InferRequestedOutput(name) for name in outputs]
        if self.concurrency == 1:
            result = self._call(
                what,
                lambda: grpc.infer(self.model, [ginp], outputs=gout, client_timeout=self.timeout),
            )
            return lambda: self._outputs(result, len(rows), outputs)
        future: Future[Any] = Future()

        def done(result: Any, error: InferenceServerException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self._call(
            what,
            lambda: grpc.async_infer(
                self.model, [ginp], done, outputs=gout, client_timeout=self.timeout
            ),
        )
        return lambda: self._outputs(self._call(what, future.result), len(rows), outputs)

    def _outputs(self, result: Any, n_rows: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Extract the named outputs from an inference result, checking their shapes.

        One-column outputs come back as ``[n_rows]``; ``reason_codes`` as ``[n_rows, 4]``;
        BYTES outputs are decoded to str.
        """
        arrays = {}
        for name in names:
            columns = DECISION_OUTPUTS.get(name, 1)
            values = result.as_numpy(name)
            if values is None or values.shape != (n_rows, columns):
                shape = None if values is None else list(values.shape)
                raise ScoringError(
                    f"model {self.model!r} returned {name!r} with shape {shape}, "
                    f"expected [{n_rows}, {columns}]",
                    client_error=False,
                )
            if values.dtype == np.object_:
                values = np.vectorize(_text, otypes=[object])(values)
            elif name in ("probability", "pd"):
                values = values.astype(np.float32, copy=False)
            arrays[name] = values[:, 0] if columns == 1 else values
        return arrays

    def score(
        self,
        rows: np.ndarray,
        *,
        batch_size: int | None = None,
        check: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Return the default probability of each row, in order.

        Args:
            rows: Raw features ``[n, 23]`` in contract order (any real dtype; sent as FP32).
            batch_size: Rows per request; defaults to and may not exceed ``max_batch_size``.
            check: Check the rows against the contract before sending (the server checks too).
            on_batch: Called with the number of rows of each finished request (progress bars).

        Returns:
            float32 array ``[n]``.

        Raises:
            ContractViolation: ``rows`` has the wrong shape or (with ``check``) breaks the
                contract; nothing was sent.
            ScoringError: A request failed.
        """
        return self._run(rows, (OUTPUT_NAME,), batch_size, check, on_batch)[OUTPUT_NAME]

    def decide(
        self,
        rows: np.ndarray,
        *,
        batch_size: int | None = None,
        check: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> Decisions:
        """Return every output of the ensemble for each row, in order (arguments as ``score``)."""
        return Decisions(**self._run(rows, tuple(DECISION_OUTPUTS), batch_size, check, on_batch))

    def _run(
        self,
        rows: np.ndarray,
        outputs: tuple[str, ...],
        batch_size: int | None,
        check: bool,
        on_batch: Callable[[int], None] | None,
    ) -> dict[str, np.ndarray]:
        """Send ``rows`` in batches (``concurrency`` in flight); gather ``outputs`` in order."""
        values = np.asarray(rows, dtype=np.float64)
        self.contract.check_shape(values)
        if check:
            self.contract.validate(values)
        limit = self.max_batch_size
        size = limit if batch_size is None else batch_size
        if not 1 <= size <= limit:
            raise ValueError(f"batch size must be between 1 and {limit} (max_batch_size)")
        features = np.ascontiguousarray(values, dtype=np.float32)
        parts: list[dict[str, np.ndarray]] = []
        pending: deque[tuple[int, int, Callable[[], dict[str, np.ndarray]]]] = deque()

        def collect() -> None:
            start, stop, wait = pending.popleft()
            parts.append(wait())
            if on_batch is not None:
                on_batch(stop - start)

        for start, stop in batch_bounds(len(features), size):
            if len(pending) >= self.concurrency:
                collect()
            pending.append((start, stop, self._submit(features[start:stop], start, outputs)))
        while pending:
            collect()
        return {name: np.concatenate([part[name] for part in parts]) for name in outputs}

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> Self:
        """Return the client itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection."""
        self.close()


@dataclass(frozen=True)
class Decisions:
    """Every output of the ensemble, one entry per applicant (``reason_codes``: 4 per row)."""

    probability: np.ndarray  # float32 [n], the network's probability of default
    pd: np.ndarray  # float32 [n], calibrated probability of default
    score: np.ndarray  # int32 [n], scorecard points
    decision: np.ndarray  # str [n]: approve / refer / decline
    reason_codes: np.ndarray  # str [n, 4], "" where fewer than four features raised the PD
    policy: np.ndarray  # str [n], "id@version" of the decision policy

    def row(
        self,
        i: int,
        catalogue: ReasonCatalogue | None = None,
        applicant: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Row ``i`` as a JSON-ready dict (reason texts need ``catalogue`` and ``applicant``).

        ``applicant``: the row's raw features [23]; each reason code then carries the text for
        this applicant's value.
        """
        codes = [c for c in self.reason_codes[i] if c]
        if (catalogue is None) != (applicant is None):
            raise ValueError("reason texts need both the catalogue and the applicant's features")
        return {
            "probability": float(_format_probability(self.probability[i])),
            "pd": float(_format_probability(self.pd[i])),
            "score": int(self.score[i]),
            "decision": str(self.decision[i]),
            "reason_codes": [
                {"code": c, "text": catalogue.text(c, applicant[catalogue.codes.index(c)])}
                if catalogue is not None and applicant is not None
                else c
                for c in codes
            ],
            "policy": str(self.policy[i]),
        }

    def csv_cells(self, i: int) -> list[str]:
        """Row ``i`` as the CSV_COLUMNS cells."""
        return [
            _format_probability(self.probability[i]),
            _format_probability(self.pd[i]),
            str(int(self.score[i])),
            str(self.decision[i]),
            *(str(c) for c in self.reason_codes[i]),
            str(self.policy[i]),
        ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_catalogue(contract: FeatureContract) -> ReasonCatalogue:
    """The reason-code catalogue shipped with the contract."""
    return ReasonCatalogue.from_json(REASON_CODES_JSON, contract.names)


# ---------------------------------------------------------------------------------------------
# Input parsing (no server needed)


def applicant_from_mapping(values: dict[str, Any], contract: FeatureContract) -> np.ndarray:
    """Turn ``{feature: value}`` into a checked ``[1, 23]`` row in contract order.

    The contract's ID column may be present (it is not a feature); any other unknown key,
    a missing feature, a non-number or a value outside the contract raises :class:`InputError`.
    """
    id_column = contract.spec.get("id_column")
    unknown = sorted(k for k in values if k not in contract.names and k != id_column)
    missing = [name for name in contract.names if name not in values]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing features: {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown keys: {', '.join(unknown)}")
        raise InputError(f"{'; '.join(parts)} (the contract's 23 features are required)")
    row = np.empty((1, contract.n_features), dtype=np.float64)
    for j, name in enumerate(contract.names):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"feature {name} must be a number, got {value!r}")
        row[0, j] = value
    invalid = contract.invalid_mask(row)
    if invalid.any():
        raise InputError(contract.first_violation(row, invalid, lambda _: "applicant"))
    return row


@dataclass(frozen=True)
class CsvTable:
    """A CSV file's header, its rows as read (strings) and their checked features."""

    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # file line number of each row
    features: np.ndarray  # float64 [n_rows, 23] in contract order


def _open_text(path: str | os.PathLike[str], mode: str, gz: bool | None = None) -> IO[str]:
    """Open a text file for csv; gzipped if ``gz`` (default: the name ends in ``.gz``)."""
    gz = str(path).endswith(".gz") if gz is None else gz
    encoding = "utf-8-sig" if mode == "r" else "utf-8"  # tolerate a BOM on input
    if gz:
        return gzip.open(path, mode + "t", encoding=encoding, newline="")
    return open(path, mode, encoding=encoding, newline="")


def read_csv(path: str | os.PathLike[str], contract: FeatureContract) -> CsvTable:
    """Read and check a CSV of applicants; raise :class:`InputError` naming row and column.

    Columns: the 23 contract features (any order), optionally the contract's ID and target
    columns; anything else is an error. Every value must be a number within the contract.
    """
    try:
        with _open_text(path, "r") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows, lines = [], []
            for record in reader:
                if not record:  # blank line
                    continue
                if len(record) != len(header):
                    raise InputError(
                        f"{path}: line {reader.line_num}: expected {len(header)} fields as in "
                        f"the header, got {len(record)}"
                    )
                rows.append(record)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not header:
        raise InputError(f"{path} is empty; expected a header with the contract's features")
    try:
        features = contract.parse_table(
            header, rows, lambda i: f"data row {i + 1} (line {lines[i]})"
        )
    except ContractViolation as exc:
        raise InputError(f"{path}: {exc}") from None
    return CsvTable(header, rows, lines, features)


def write_csv(
    path: str | os.PathLike[str],
    table: CsvTable,
    results: np.ndarray | Decisions,
    column: str = OUTPUT_NAME,
) -> None:
    """Write the input rows plus the results, atomically (temp file, then rename).

    ``results``: probabilities (one ``column``) or :class:`Decisions` (the CSV_COLUMNS).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if isinstance(results, Decisions):
        columns, cells = list(CSV_COLUMNS), results.csv_cells
    else:
        columns, cells = [column], lambda i: [_format_probability(results[i])]
    try:
        with _open_text(tmp, "w", gz=target.name.endswith(".gz")) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([*table.header, *columns])
            for i, record in enumerate(table.rows):
                writer.writerow([*record, *cells(i)])
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _format_probability(value: np.floating | float) -> str:
    """Shortest decimal that reads back as the same float32."""
    return str(np.float32(value))


# ---------------------------------------------------------------------------------------------
# Command line


def _number(text: str) -> float:
    """Argparse type for a feature value."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_int(text: str) -> int:
    """Argparse type for counts."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    """Argparse type for seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser(contract: FeatureContract | None = None) -> argparse.ArgumentParser:
    """Build the argument parser (one ``--NAME`` flag per contract feature for ``score-one``)."""
    contract = contract or load_contract()
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server")
    server.add_argument(
        "--url", help="host:port (default localhost:8000 for http, localhost:8001 for grpc)"
    )
    server.add_argument("--protocol", choices=PROTOCOLS, default="http")
    server.add_argument("--model", default=DEFAULT_MODEL, help="ensemble name (%(default)s)")
    server.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds per request and for connecting (%(default)s)",
    )

    parser = argparse.ArgumentParser(
        prog="python -m preprocess_ensemble.client",
        description="Score credit applicants with the credit_scoring Triton ensemble.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    one = commands.add_parser(
        "score-one",
        parents=[common],
        help="score one applicant (JSON object or one flag per feature)",
        description="Score one applicant given as a JSON object or as --NAME VALUE flags "
        "(all 23 contract features).",
    )
    source = one.add_mutually_exclusive_group()
    source.add_argument("--json", dest="json_text", metavar="OBJECT", help="JSON object")
    source.add_argument("--json-file", type=Path, metavar="PATH", help="file with a JSON object")
    one.add_argument("--output-json", action="store_true", help="print a JSON object")
    flags = one.add_argument_group("features (all required unless --json/--json-file)")
    for name, spec in zip(contract.names, contract.spec["features"], strict=True):
        flags.add_argument(
            f"--{name}",
            dest=f"feature:{name}",
            type=_number,
            metavar="X",
            help=spec.get("description", "").replace("%", "%%"),
        )

    many = commands.add_parser(
        "score-csv",
        parents=[common],
        help="score every row of a CSV file",
        description="Score a CSV with a header (the 23 features, optional ID and target "
        "columns); write its rows plus probability, pd, score, decision, reason_code_1..4 and "
        "policy columns in the same order.",
    )
    many.add_argument("input", type=Path, metavar="INPUT.csv")
    many.add_argument("output", type=Path, metavar="OUTPUT.csv")
    many.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help="rows per request, at most the model's max_batch_size (%(default)s)",
    )
    many.add_argument(
        "--concurrency", type=_positive_int, default=1, help="requests in flight (%(default)s)"
    )
    many.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    return parser


def _applicant_from_args(args: argparse.Namespace, contract: FeatureContract) -> dict[str, Any]:
    """Collect the applicant from --json, --json-file or the per-feature flags."""
    flags = {n: getattr(args, f"feature:{n}") for n in contract.names}
    given = {n: v for n, v in flags.items() if v is not None}
    if args.json_text is None and args.json_file is None:
        return given
    if given:
        raise InputError(
            f"give the applicant either as JSON or as flags, not both (flags: {', '.join(given)})"
        )
    try:
        text = args.json_text if args.json_file is None else args.json_file.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {args.json_file}: {exc}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise InputError(f"expected a JSON object of feature values, got {type(values).__name__}")
    return values


def _score_one(args: argparse.Namespace, contract: FeatureContract) -> int:
    values = _applicant_from_args(args, contract)
    row = applicant_from_mapping(values, contract)
    with CreditScoringClient(
        args.url, args.protocol, model=args.model, timeout=args.timeout, contract=contract
    ) as client:
        decided = client.decide(row).row(0, load_catalogue(contract), row[0])
    if args.output_json:
        payload: dict[str, Any] = {"model": args.model}
        id_column = contract.spec.get("id_column")
        if id_column in values:
            payload[id_column] = values[id_column]
        print(json.dumps(payload | decided))
    else:
        for key in ("probability", "pd", "score", "decision", "policy"):
            print(f"{key + ':':<13}{decided[key]}")
        reasons = decided["reason_codes"] or [{"code": "-", "text": "none"}]
        for k, reason in enumerate(reasons):
            print(f"{'reasons:' if k == 0 else '':<13}{reason['code']}  {reason['text']}")
    return EXIT_OK


def _score_csv(args: argparse.Namespace, contract: FeatureContract) -> int:
    from tqdm import tqdm

    table = read_csv(args.input, contract)
    clash = [c for c in CSV_COLUMNS if c in table.header]
    if clash:
        raise InputError(f"{args.input} already has a {clash[0]!r} column")
    started = time.monotonic()
    with CreditScoringClient(
        args.url,
        args.protocol,
        model=args.model,
        timeout=args.timeout,
        concurrency=args.concurrency,
        contract=contract,
    ) as client:
        if args.batch_size > client.max_batch_size:
            raise InputError(
                f"--batch-size {args.batch_size} exceeds the max_batch_size "
                f"{client.max_batch_size} of model {args.model!r}"
            )
        disable = None if args.progress is None else not args.progress
        with tqdm(total=len(table.rows), unit="row", desc="scoring", disable=disable) as bar:
            decisions = client.decide(
                table.features, batch_size=args.batch_size, check=False, on_batch=bar.update
            )
    write_csv(args.output, table, decisions)
    seconds = time.monotonic() - started
    print(
        f"scored {len(table.rows)} rows in {seconds:.2f}s "
        f"({len(table.rows) / max(seconds, 1e-9):.0f} rows/s) -> {args.output}",
        file=sys.stderr,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 bad input or rejected request, 1 failure)."""
    contract = load_contract()
    args = build_parser(contract).parse_args(argv)
    command = _score_one if args.command == "score-one" else _score_csv
    try:
        return command(args, contract)
    except (InputError, ContractViolation) as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.client_error else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
