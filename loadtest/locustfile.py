r"""Locust users for the ``credit_scoring`` ensemble over HTTP and gRPC (KServe v2).

Each user sends realistic applicants: holdout rows (or ``--rows-file``), raw, in the contract's
order; mostly single-applicant requests, sometimes a batch of ``--batch-rows`` rows. Every
response is checked (``loadtest.protocol.check_decisions``: probability and calibrated PD in
[0, 1], an INT32 score, a known decision, four reason-code slots and the policy per row);
anything else is a failure.

* ``HttpScoringUser``: FastHttpUser, binary tensors over HTTP (``--host http://HOST:8000``).
* ``GrpcScoringUser``: ``tritonclient.grpc`` on gevent (``--grpc-host HOST:8001``); gevent
  support is initialised before any channel and the client is closed in ``on_stop``, so the
  run ends cleanly.

Run it through ``make loadtest`` / ``python -m loadtest.run_locust`` (which bounds users and
time and can start a local server), or directly::

    locust -f loadtest/locustfile.py --headless --host http://HOST:8000 --grpc-host HOST:8001 \
        -u 16 -r 4 -t 2m --csv reports/locust/locust --html reports/locust/locust.html
"""

from __future__ import annotations

import time

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC channel exists, else greenlets block on gRPC calls

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
from locust import FastHttpUser, User, events, task  # noqa: E402

from loadtest.protocol import (  # noqa: E402
    DECISION_OUTPUTS,
    HEADER_LENGTH,
    BadResponse,
    check_decisions,
    http_binary_body,
    parse_http_outputs,
)
from loadtest.rows import load_rows  # noqa: E402

SINGLE_WEIGHT, BATCH_WEIGHT = 9, 1


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:  # noqa: ANN001 - Locust's configargparse parser
    group = parser.add_argument_group("credit scoring")
    group.add_argument("--grpc-host", default="127.0.0.1:8001", help="Triton gRPC host:port")
    group.add_argument("--model", default="credit_scoring", help="model to score with")
    group.add_argument("--batch-rows", type=int, default=256, help="rows per batch request")
    group.add_argument("--rows-file", default="", help=".npy or CSV of raw rows (holdout)")


class Workload:
    """Rows and pre-encoded request bodies, shared by all users of this process."""

    rows: np.ndarray | None = None
    singles: list[tuple[bytes, int]] = []
    batches: list[np.ndarray] = []
    batch_bodies: list[tuple[bytes, int]] = []

    @classmethod
    def prepare(cls, options) -> None:  # noqa: ANN001 - Locust's parsed options
        """Load the rows once and encode every request body up front."""
        if cls.rows is not None:
            return
        cls.rows = load_rows(options.rows_file or None)
        size = min(options.batch_rows, len(cls.rows))
        cls.singles = [
            http_binary_body(cls.rows[i : i + 1], outputs=DECISION_OUTPUTS)
            for i in range(len(cls.rows))
        ]
        starts = range(0, len(cls.rows) - size + 1, size)
        cls.batches = [cls.rows[s : s + size] for s in starts]
        cls.batch_bodies = [http_binary_body(b, outputs=DECISION_OUTPUTS) for b in cls.batches]


@events.init.add_listener
def _prepare(environment, **_kwargs) -> None:  # noqa: ANN001
    Workload.prepare(environment.parsed_options)


class HttpScoringUser(FastHttpUser):
    """Scores applicants over HTTP with KServe v2 binary tensors."""

    def on_start(self) -> None:
        """Pick a random starting row so users do not send the same sequence."""
        self.model = self.environment.parsed_options.model
        self.index = int(np.random.default_rng().integers(len(Workload.singles)))

    def _post(self, name: str, body: tuple[bytes, int], n_rows: int) -> None:
        data, header_length = body
        headers = {HEADER_LENGTH: str(header_length), "Content-Type": "application/octet-stream"}
        with self.client.post(
            f"/v2/models/{self.model}/infer",
            data=data,
            headers=headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                length = response.headers.get(HEADER_LENGTH)
                if not length:
                    raise BadResponse("the server answered in JSON, not binary tensors")
                check_decisions(parse_http_outputs(response.content, int(length)), n_rows)
            except (ValueError, KeyError) as exc:
                response.failure(f"bad response: {exc}")

    @task(SINGLE_WEIGHT)
    def score_one(self) -> None:
        """One applicant."""
        self.index = (self.index + 1) % len(Workload.singles)
        self._post("http single", Workload.singles[self.index], 1)

    @task(BATCH_WEIGHT)
    def score_batch(self) -> None:
        """A batch of applicants."""
        k = self.index % len(Workload.batch_bodies)
        self._post(
            f"http batch {len(Workload.batches[k])}",
            Workload.batch_bodies[k],
            len(Workload.batches[k]),
        )


class GrpcScoringUser(User):
    """Scores applicants over gRPC with ``tritonclient.grpc`` (gevent-enabled)."""

    def on_start(self) -> None:
        """Open the channel (after ``init_gevent``)."""
        options = self.environment.parsed_options
        self.model = options.model
        self.client = grpcclient.InferenceServerClient(options.grpc_host)
        self.index = int(np.random.default_rng().integers(len(Workload.rows)))

    def on_stop(self) -> None:
        """Close the channel, or Locust waits for it at the end of the run."""
        self.client.close()

    def _infer(self, name: str, rows: np.ndarray) -> None:
        tensor = grpcclient.InferInput("features", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        started = time.perf_counter()
        exception: Exception | None = None
        length = 0
        try:
            result = self.client.infer(self.model, [tensor], client_timeout=60)
            arrays = {name: result.as_numpy(name) for name in DECISION_OUTPUTS}
            check_decisions(arrays, len(rows))
            length = sum(v.nbytes for v in arrays.values())
        except Exception as exc:  # noqa: BLE001 - every failure is reported to Locust
            exception = exc
        events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1e3,
            response_length=length,
            exception=exception,
            context={},
        )

    @task(SINGLE_WEIGHT)
    def score_one(self) -> None:
        """One applicant."""
        self.index = (self.index + 1) % len(Workload.rows)
        self._infer("grpc single", Workload.rows[self.index : self.index + 1])

    @task(BATCH_WEIGHT)
    def score_batch(self) -> None:
        """A batch of applicants."""
        batch = Workload.batches[self.index % len(Workload.batches)]
        self._infer(f"grpc batch {len(batch)}", batch)
