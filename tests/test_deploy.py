"""The deployment, checked offline and against the real local Triton.

Static: ``make validate-deploy`` (kustomize, kubernetes-validate, checkov, yamllint, hadolint,
actionlint) plus consistency checks between the Dockerfile, the manifests and the model configs.
Real server: the rendered prod Deployment's container args (through the image's entrypoint
script) start the local Triton; its probe paths and ports answer; its probe timings fit the
measured start-up; SIGTERM under load lets in-flight requests finish.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.config import CONTRACT_JSON, MODEL_REPOSITORY
from preprocess_ensemble.features import FeatureContract
from preprocess_ensemble.triton_server import (
    TritonServer,
    TritonServerError,
    default_backend_dir,
)

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".cache" / "venvs" / "deploy-tools" / "bin"
OVERLAYS = sorted(p.name for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
ADMIN_HEADER = "triton-admin-key"
PROBE_SCRIPT = ROOT / "deploy" / "probe.py"
PROBE_IN_IMAGE = "/usr/local/bin/triton-probe"
EXEC_PROBES = ("livenessProbe", "readinessProbe")
NGC_PYTHON = (3, 10)  # python3 of nvcr.io/nvidia/tritonserver:24.10-py3 (Ubuntu 22.04)
PUBLIC = "public"  # the one overlay reachable from outside the cluster
CLIENT_LABEL = "credit-scoring/client"
GRPC_TLS_FLAGS = {
    "--grpc-use-ssl-mutual",
    "--grpc-server-cert",
    "--grpc-server-key",
    "--grpc-root-cert",
}
S3_FORM = re.compile(r"^s3://https://storage\.yandexcloud\.net:443/[a-z0-9][a-z0-9.-]+/\S+$")


def _need_kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is required for the deployment tests in CI")
        pytest.skip("kubectl not installed")
    return kubectl


@pytest.fixture(scope="module")
def tools() -> Path:
    """The deploy-tools venv's bin directory (created by ``make deploy-tools`` if needed)."""
    subprocess.run(["make", "-s", "deploy-tools"], cwd=ROOT, check=True, capture_output=True)
    return TOOLS


def render(overlay: str, tools: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` an overlay and return its objects (parsed by the tools venv)."""
    kubectl = _need_kubectl()
    yaml_text = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    to_json = "import json,sys,yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"
    out = subprocess.run(
        [str(tools / "python"), "-c", to_json],
        input=yaml_text,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [obj for obj in json.loads(out) if obj]


@pytest.fixture(scope="module")
def manifests(tools: Path) -> dict[str, list[dict[str, Any]]]:
    """Every overlay's rendered objects."""
    return {overlay: render(overlay, tools) for overlay in OVERLAYS}


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``)."""
    hits = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def triton_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The tritonserver container of the Deployment."""
    spec = find(objects, "Deployment", "credit-scoring-triton")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "tritonserver")


def flag(args: list[str], name: str) -> str:
    """The value of ``--name=value`` in ``args`` (exactly one occurrence)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]


def dockerfile_cmd() -> list[str]:
    """The runtime stage's JSON CMD."""
    text = (ROOT / "Dockerfile").read_text()
    runtime = text.replace("\\\n", "").split(" AS runtime", 1)[1]
    match = re.search(r"^CMD (\[.*?\])\s*$", runtime, re.M)
    assert match, "no JSON CMD in the Dockerfile's runtime stage"
    return list(json.loads(match.group(1)))


# ---------------------------------------------------------------------------------- static


def build_context_keeps(path: str) -> bool:
    """Whether .dockerignore (``*`` then ``!`` exceptions, last match wins) sends ``path``."""
    keep = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            keep = negated
    return keep


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    """A COPY of a file .dockerignore leaves out fails the image build, which CI cannot run."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    assert "deploy/probe.py" in sources and "drift" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        files = (
            [source]
            if (ROOT / source).is_file()
            else [p.relative_to(ROOT).as_posix() for p in (ROOT / source).rglob("*.py")]
        )
        missing = [f for f in files if not build_context_keeps(f)]
        assert not missing, (source, missing[:3])


@pytest.mark.slow
def test_make_validate_deploy_passes() -> None:
    result = subprocess.run(
        ["make", "validate-deploy"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "validate-deploy: all checks passed" in result.stdout


def test_strict_schema_validation_rejects_unknown_fields(tools: Path, tmp_path: Path) -> None:
    """kubernetes-validate --strict is not a no-op: a misspelled probe field fails it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n"
        "    - name: x\n      image: x:1\n      readinessProbe:\n"
        "        httpGet: {path: /v2/health/ready, port: 8000}\n        periodSecond: 5\n"
    )
    result = subprocess.run(
        [str(tools / "kubernetes-validate"), "--strict", "-k", "1.32.0", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0, result.stdout


def test_every_checkov_skip_has_a_reason() -> None:
    rows = [
        line.split("\t")
        for line in (ROOT / "deploy" / "checkov-skips.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rows
    for row in rows:
        assert len(row) == 3, row
        check, scope, reason = row
        assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check), check
        assert scope in {"dockerfile", "k8s", *OVERLAYS}, scope
        assert len(reason.split()) >= 8, f"{check}: the reason is too short"


def test_every_overlay_renders_the_core_objects(manifests: dict[str, list[dict]]) -> None:
    for overlay, objects in manifests.items():
        kinds = {o["kind"] for o in objects}
        assert {
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "ServiceMonitor",
            "CronJob",
        } <= kinds, overlay
        assert all(
            o["metadata"].get("namespace") == "credit-scoring"
            for o in objects
            if o["kind"] != "Namespace"
        ), overlay


def test_dockerfile_cmd_is_the_deployment_args(manifests: dict[str, list[dict]]) -> None:
    """One flag list: the image's CMD, prod's args; prod-s3 changes only the repository, the
    public overlay only adds Triton's gRPC TLS flags."""
    prod = triton_container(manifests["prod"])["args"]
    assert dockerfile_cmd() == prod
    common = [a for a in prod if not a.startswith("--model-repository=")]
    for overlay, objects in manifests.items():
        args = triton_container(objects)["args"]
        same = [a for a in args if not a.startswith("--model-repository=")]
        if overlay == PUBLIC:
            assert {a.split("=", 1)[0] for a in same[len(common) :]} == GRPC_TLS_FLAGS
            same = same[: len(common)]
        assert same == common, overlay
    s3 = flag(triton_container(manifests["prod-s3"])["args"], "model-repository")
    assert S3_FORM.match(s3), s3


def exposure(objects: list[dict[str, Any]]) -> list[str]:
    """What of an overlay is reachable from outside the cluster, one line per way in."""
    found = []
    for service in (o for o in objects if o["kind"] == "Service"):
        spec = service["spec"]
        if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("externalIPs"):
            ports = ", ".join(
                f"{p['port']}->{p['targetPort']} (nodePort {p.get('nodePort')})"
                for p in spec["ports"]
            )
            found.append(f"Service {service['metadata']['name']} {spec['type']}: {ports}")
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                found.append(
                    f"Ingress {ingress['metadata']['name']} https://{rule['host']}{path['path']} "
                    f"({path['pathType']}) -> {backend['name']}:{backend['port']['name']}"
                )
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            blocks = [p["ipBlock"]["cidr"] for p in peers or [] if "ipBlock" in p]
            if not peers or blocks:
                ports = ", ".join(str(p["port"]) for p in rule.get("ports", [])) or "all ports"
                found.append(f"NetworkPolicy: {ports} from {blocks or 'anywhere'}")
    return found


def test_only_the_public_overlay_is_reachable_from_outside(
    manifests: dict[str, list[dict]], figures: dict[str, str]
) -> None:
    """Private by default: every overlay but ``public`` is ClusterIP behind a NetworkPolicy
    that names its clients; ``public`` exposes only TLS endpoints that check client certs."""
    for overlay, objects in manifests.items():
        figures[f"exposed by k8s/overlays/{overlay}"] = "; ".join(exposure(objects)) or "nothing"
        if overlay != PUBLIC:
            assert exposure(objects) == [], overlay
        policy = find(objects, "NetworkPolicy")["spec"]
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
        private = policy["ingress"][:2]  # the base's rules, in every overlay
        clients, scraper = (rule["from"] for rule in private)
        assert clients == [
            {
                "namespaceSelector": {"matchLabels": {CLIENT_LABEL: "true"}},
                "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}},
            }
        ], overlay
        assert [p["port"] for p in private[0]["ports"]] == ["http", "grpc"]
        assert scraper[0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"
        }
        assert [p["port"] for p in private[1]["ports"]] == ["metrics"]
        if overlay != PUBLIC:
            assert len(policy["ingress"]) == 2, overlay
    public = manifests[PUBLIC]
    assert exposure(public) == [
        "Service credit-scoring-triton-grpc-public LoadBalancer: 8001->grpc (nodePort 30801)",
        "Ingress credit-scoring-triton https://scoring.example.com/v2/models/credit_scoring "
        "(Prefix) -> credit-scoring-triton:http",
        "NetworkPolicy: grpc from ['0.0.0.0/0']",
    ]
    # gRPC from anywhere is Triton's own mutual TLS, from a mounted Secret.
    container = triton_container(public)
    args = container["args"]
    assert flag(args, "grpc-use-ssl-mutual") == "true"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v for v in find(public, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    for name in ("grpc-server-cert", "grpc-server-key", "grpc-root-cert"):
        path = Path(flag(args, name))
        volume = next(v for v, m in mounts.items() if path.parent == Path(m))
        assert "secret" in volumes[volume], name
    # HTTP only through the Ingress: TLS for every host, client certificates, the ingress
    # controller's pods alone admitted to the HTTP port.
    ingress = find(public, "Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-tls-verify-client"] == "on"
    assert notes["nginx.ingress.kubernetes.io/auth-tls-secret"].startswith("credit-scoring/")
    extra = find(public, "NetworkPolicy")["spec"]["ingress"][2:]
    nginx = [rule for rule in extra if "ipBlock" not in rule["from"][0]]
    assert [p["port"] for rule in nginx for p in rule["ports"]] == ["http"]
    assert nginx[0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_production_flags(manifests: dict[str, list[dict]]) -> None:
    args = triton_container(manifests["prod"])["args"]
    assert flag(args, "model-control-mode") == "none"
    assert flag(args, "strict-readiness") == "true"
    assert flag(args, "exit-on-error") == "false"
    assert int(flag(args, "exit-timeout-secs")) > 0
    assert flag(args, "model-repository") == "/models"
    entrypoint = (ROOT / "deploy" / "triton-entrypoint.sh").read_text()
    assert "--http-restricted-api=" in entrypoint
    assert "--grpc-restricted-protocol=" in entrypoint


def test_s3_overlay_takes_credentials_from_a_secret(manifests: dict[str, list[dict]]) -> None:
    env = {e["name"]: e for e in triton_container(manifests["prod-s3"]).get("env", [])}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "credit-scoring-s3"
    egress = find(manifests["prod-s3"], "NetworkPolicy")["spec"]["egress"]
    assert any(p.get("port") == 443 for rule in egress for p in rule.get("ports", []))


def model_configs(repository: Path = MODEL_REPOSITORY) -> dict[str, model_config_pb2.ModelConfig]:
    """Every model's config.pbtxt in ``repository``, parsed, by model name."""
    return {
        path.parent.name: text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        for path in sorted(repository.glob("*/config.pbtxt"))
    }


def cpu_budget(configs: dict[str, model_config_pb2.ModelConfig]) -> dict[str, int]:
    """Cores each model can keep busy at once: instances x threads per instance.

    An ensemble runs no code of its own (0). An ONNX Runtime instance runs ``intra_op`` threads
    (inter-op threads only run in ORT's parallel mode, which the configs never select); a python
    stub is one process running single-threaded numpy (OMP/OpenBLAS pinned to 1 thread in the
    Deployment). Any other backend fails the test until the budget learns it.
    """
    budget = {}
    for name, config in configs.items():
        if config.platform == "ensemble":
            budget[name] = 0
            continue
        groups = list(config.instance_group)
        assert groups, f"{name}: no instance_group; the default depends on the machine"
        assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU for g in groups), name
        instances = sum(g.count for g in groups)
        assert instances >= 1, name
        if config.backend == "python":
            threads = 1
        elif config.backend == "onnxruntime":
            params = {k: v.string_value for k, v in config.parameters.items()}
            assert "intra_op_thread_count" in params, f"{name}: ORT would use every core"
            threads = int(params["intra_op_thread_count"])
            assert int(params.get("inter_op_thread_count", "1")) == 1, (
                f"{name}: inter-op threads run only in ORT's parallel mode; recount the cores"
            )
        else:
            pytest.fail(f"{name}: backend {config.backend!r}: teach cpu_budget its threads")
        budget[name] = instances * threads
    return budget


def test_cpu_budget_counts_every_model_config() -> None:
    """The derivation is generic: one more python instance anywhere adds one core."""
    configs = model_configs()
    budget = cpu_budget(configs)
    assert set(budget) == {p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt")}
    name = next(n for n, c in configs.items() if c.backend == "python")
    more = model_config_pb2.ModelConfig()
    more.CopyFrom(configs[name])
    more.instance_group[0].count += 1
    assert sum(cpu_budget({**configs, name: more}).values()) == sum(budget.values()) + 1


def test_cpu_matches_instance_and_thread_counts(manifests: dict[str, list[dict]]) -> None:
    """requests.cpu == limits.cpu == the cores every model config can keep busy at once."""
    budget = cpu_budget(model_configs())
    cores = sum(budget.values())
    for overlay, objects in manifests.items():
        container = triton_container(objects)
        resources = container["resources"]
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == str(cores), (
            overlay,
            budget,
        )
        assert resources["requests"]["memory"] == resources["limits"]["memory"], overlay
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1", overlay


def test_shm_and_writable_dirs_are_emptydirs(manifests: dict[str, list[dict]]) -> None:
    pod = find(manifests["prod"], "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {
        m["mountPath"]: m["name"] for m in triton_container(manifests["prod"])["volumeMounts"]
    }
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    security = triton_container(manifests["prod"])["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_grace_period_outlasts_prestop_and_exit_timeout(manifests: dict[str, list[dict]]) -> None:
    pod = find(manifests["prod"], "Deployment")["spec"]["template"]["spec"]
    container = triton_container(manifests["prod"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    exit_timeout = int(flag(container["args"], "exit-timeout-secs"))
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + exit_timeout + 5


def load_probe() -> Any:
    """deploy/probe.py as a module (it is a script, not a package member)."""
    spec = importlib.util.spec_from_file_location("triton_probe", PROBE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_is_stdlib_only_and_carried_by_the_image() -> None:
    """The NGC image has python3 and its standard library, nothing of ours but this file."""
    imported = set()
    # The NGC 24.10 image's python3 is older than ours: parse with its grammar.
    tree = ast.parse(PROBE_SCRIPT.read_text(), feature_version=NGC_PYTHON)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    runtime = (ROOT / "Dockerfile").read_text().split(" AS runtime", 1)[1]
    copies = re.findall(r"^COPY --chmod=0755 deploy/probe\.py (\S+)$", runtime, re.M)
    assert copies == [PROBE_IN_IMAGE]


def test_probe_expects_the_ensembles_outputs_for_a_valid_applicant() -> None:
    """The probe's expectations are the ensemble's config; its applicant passes the contract."""
    probe = load_probe()
    ensemble = model_configs()[probe.MODEL]
    assert ensemble.platform == "ensemble"
    kserve = {"STRING": "BYTES"}
    declared = {}
    for output in ensemble.output:
        name = model_config_pb2.DataType.Name(output.data_type).removeprefix("TYPE_")
        declared[output.name] = (kserve.get(name, name), list(output.dims))
    assert declared == probe.OUTPUTS
    FeatureContract.from_json(CONTRACT_JSON).validate(np.array([probe.APPLICANT], np.float32))


def test_liveness_and_readiness_run_the_inference_probe(manifests: dict[str, list[dict]]) -> None:
    """Both probes run triton-probe; readiness gives up first, so a broken pod leaves the
    Service before the kubelet restarts it; each probe's own deadline is below the kubelet's."""
    for overlay, objects in manifests.items():
        container = triton_container(objects)
        http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
        for name in EXEC_PROBES:
            probe = container[name]
            command = probe["exec"]["command"]
            assert command[:4] == ["python3", "-I", "-S", PROBE_IN_IMAGE], (overlay, name)
            assert flag(command, "url") == f"http://127.0.0.1:{http_port}", (overlay, name)
            assert float(flag(command, "timeout")) < probe["timeoutSeconds"], (overlay, name)
        ready, live = container["readinessProbe"], container["livenessProbe"]
        assert ready.get("successThreshold", 1) == 1
        assert (
            ready["periodSeconds"] * ready["failureThreshold"]
            < live["periodSeconds"] * live["failureThreshold"]
        ), overlay
        # While models load only the cheap health endpoint is asked; the exec probes start
        # after the startup probe passed.
        assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready", overlay


def test_hpa_metric_is_the_adapter_rule(manifests: dict[str, list[dict]], tools: Path) -> None:
    hpa = find(manifests["prod"], "HorizontalPodAutoscaler")
    names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    values = ROOT / "k8s" / "monitoring" / "prometheus-adapter-values.yaml"
    to_json = "import json,sys,yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"
    rules = json.loads(
        subprocess.run(
            [str(tools / "python"), "-c", to_json, str(values)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )["rules"]["custom"]
    assert names == {rule["name"]["as"] for rule in rules}


def test_release_render_pins_images_by_digest(tools: Path) -> None:
    _need_kubectl()
    triton, drift = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    result = subprocess.run(
        [str(ROOT / "deploy" / "render-release.sh"), "prod-s3", "crp0example", triton, drift],
        check=True,
        capture_output=True,
        text=True,
    )
    images = set(re.findall(r"^\s+image: (\S+)$", result.stdout, re.M))
    assert images == {
        f"cr.yandex/crp0example/credit-scoring-triton@{triton}",
        f"cr.yandex/crp0example/credit-scoring-drift@{drift}",
    }
    bad = subprocess.run(
        [str(ROOT / "deploy" / "render-release.sh"), "prod", "crp0example", "latest", drift],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2


# ------------------------------------------------------------------------ the real server


def entrypoint_argv(args: list[str], key: str, tmp_path: Path) -> list[str]:
    """Run deploy/triton-entrypoint.sh with a capturing ``tritonserver``; return its argv."""
    capture = tmp_path / "capture-argv"
    out = tmp_path / "argv"
    capture.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{out}'\n")
    capture.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "TRITONSERVER": str(capture), "TRITON_ADMIN_KEY": key}
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "triton-entrypoint.sh"), *args], env=env, check=True
    )
    return out.read_bytes().decode().split("\0")[:-1]


class ContainerArgsServer(TritonServer):
    """The local Triton started with exactly the container's argv, paths and ports mapped."""

    def __init__(
        self,
        argv: list[str],
        ports: dict[str, int],
        paths: dict[str, Path] | None = None,
        **kwargs: Any,
    ) -> None:
        """``paths`` maps a container directory (a mounted Secret) to a local one."""
        super().__init__(MODEL_REPOSITORY, backend_dir=default_backend_dir(), **kwargs)
        mapping = {ports["http"]: self.http_port, ports["grpc"]: self.grpc_port}
        mapping[ports["metrics"]] = self.metrics_port
        self.container_argv = argv
        self.mapped: list[str] = []
        for arg in argv:
            name, _, value = arg.partition("=")
            if name == "--model-repository":
                assert value == "/models", "the test maps the image's /models only"
                arg = f"--model-repository={self.model_repository}"
            elif name in {"--http-port", "--grpc-port", "--metrics-port"}:
                arg = f"{name}={mapping[int(value)]}"
            for inside, local in (paths or {}).items():
                if value.startswith(f"{inside}/"):
                    arg = f"{name}={local}/{value.removeprefix(f'{inside}/')}"
            self.mapped.append(arg)

    def command(self) -> list[str]:
        """The container's argv plus the local backend directory and loopback addresses."""
        return [
            str(self.binary),
            *self.mapped,
            f"--backend-directory={self.backend_dir}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
        ]


@dataclass
class Started:
    """A started container-args server and what its start-up took."""

    server: ContainerArgsServer
    container: dict[str, Any]
    key: str
    to_live: float
    to_ready: float
    ports: dict[str, int] = field(default_factory=dict)  # container port -> local port

    def local_port(self, port: int | str) -> int:
        """Local port for a container port number or name."""
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)
        return self.ports[int(port)]


def start_container_server(
    manifests: dict[str, list[dict]],
    tmp_path: Path,
    log_name: str,
    exit_timeout: int | None = None,
    local_ports: dict[str, int] | None = None,
    overlay: str = "prod",
    paths: dict[str, Path] | None = None,
) -> Started:
    """Start the local Triton as the prod Deployment's container would run.

    ``exit_timeout`` replaces --exit-timeout-secs (only for the test that pins its limit);
    ``local_ports`` (``http_port``, ``grpc_port``, ``metrics_port``) reuses a stopped server's
    ports, as a container restarted by the kubelet keeps its pod's; ``paths`` maps mounted
    Secret directories of ``overlay``'s container to local ones.
    """
    container = triton_container(manifests[overlay])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    key = f"test-{os.getpid()}-{time.monotonic_ns()}"
    args = list(container["args"])
    if exit_timeout is not None:
        args = [a for a in args if not a.startswith("--exit-timeout-secs=")]
        args.append(f"--exit-timeout-secs={exit_timeout}")
    argv = entrypoint_argv(args, key, tmp_path)
    try:
        server = ContainerArgsServer(
            argv, ports, paths, log_path=tmp_path / log_name, **(local_ports or {})
        )
    except TritonServerError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no tritonserver binary: {error}")
    t0 = time.monotonic()
    server.start()
    try:
        server.wait_live(120)
        to_live = time.monotonic() - t0
        server.wait_ready(120)
        to_ready = time.monotonic() - t0
    except BaseException:
        server.stop()
        raise
    local = {
        ports["http"]: server.http_port,
        ports["grpc"]: server.grpc_port,
        ports["metrics"]: server.metrics_port,
    }
    return Started(server, container, key, to_live, to_ready, local)


@pytest.fixture(scope="module")
def started(
    manifests: dict[str, list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Started]:
    run = start_container_server(manifests, tmp_path_factory.mktemp("container"), "triton.log")
    yield run
    run.server.stop()


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    """Status of one request (0 if nothing answered)."""
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0


@pytest.mark.triton
def test_container_args_start_a_ready_server(started: Started, figures: dict[str, str]) -> None:
    """(a) The container's exact argv (through the entrypoint) serves every model."""
    argv = started.server.container_argv
    assert argv[: len(started.container["args"])] == started.container["args"]
    assert len(argv) == len(started.container["args"]) + 2  # + the two restricted-API flags
    assert started.server.is_ready()
    index = f"http://{started.server.http_url}/v2/repository/index"
    assert http(index, "POST") == 403  # restricted: the entrypoint closed it
    assert http(index, "POST", {ADMIN_HEADER: started.key}) == 200
    shm = f"http://{started.server.http_url}/v2/systemsharedmemory/status"
    assert http(shm) == 403
    figures["container args: start -> live / ready"] = (
        f"{started.to_live:.2f} s / {started.to_ready:.2f} s"
    )


@dataclass
class ProbeRun:
    """One run of an exec probe's command: exit code, its stderr line and what it cost."""

    code: int
    stderr: str
    seconds: float
    cpu_seconds: float
    max_rss_mib: float


def probe_argv(started: Started, probe: str) -> list[str]:
    """The probe's exec command for this machine: this python, the repo's script, local port."""
    command = started.container[probe]["exec"]["command"]
    assert command[0] == "python3" and PROBE_IN_IMAGE in command
    argv = [sys.executable]
    for arg in command[1:]:
        if arg == PROBE_IN_IMAGE:
            arg = str(PROBE_SCRIPT)
        elif arg.startswith("--url="):
            port = int(arg.rsplit(":", 1)[1])
            arg = f"--url=http://127.0.0.1:{started.local_port(port)}"
        argv.append(arg)
    return argv


# Runs argv[1:] with no environment and prints [exit code, wall s, CPU s, peak RSS KiB]. A
# small launcher, because a child forked from pytest inherits pytest's RSS high-water mark.
_MEASURE = """
import json, os, sys, time
t0 = time.monotonic()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], {})
_, status, usage = os.wait4(pid, 0)
seconds = time.monotonic() - t0
code = os.waitstatus_to_exitcode(status)
print(json.dumps([code, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss]))
"""


def run_probe(argv: list[str]) -> ProbeRun:
    """Run a probe command as the kubelet would (no environment); measure its own cost.

    The probe's stdout must stay empty (the launcher's JSON line is the only output).
    """
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _MEASURE, *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    code, seconds, cpu, rss_kib = json.loads(result.stdout)
    return ProbeRun(code, result.stderr.strip(), seconds, cpu, rss_kib / 1024)


@pytest.mark.triton
def test_probe_paths_and_ports_answer(started: Started, manifests: dict[str, list[dict]]) -> None:
    """(b) Every probe the manifests name passes on their ports; the Services' target ports."""
    startup = started.container["startupProbe"]["httpGet"]
    url = f"http://127.0.0.1:{started.local_port(startup['port'])}{startup['path']}"
    assert http(url) == 200, url
    for name in EXEC_PROBES:
        run = run_probe(probe_argv(started, name))
        assert run.code == 0 and not run.stderr, (name, run)
    for service in (o for o in manifests["prod"] if o["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            local = started.local_port(port["targetPort"])
            assert local in started.ports.values()
    metrics_port = started.local_port("metrics")
    monitor = find(manifests["prod"], "ServiceMonitor")
    path = monitor["spec"]["endpoints"][0]["path"]
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{path}", timeout=10) as r:
        text = r.read().decode()
    for series in (
        'nv_inference_request_success{model="credit_scoring"',
        'nv_inference_queue_duration_us{model="credit_model"',
        'nv_inference_queue_duration_us{model="preprocess"',
    ):
        assert series in text, series  # what the prometheus-adapter rule reads


@functools.cache
def _batch(rows: int = 1024) -> np.ndarray:
    """The first ``rows`` applicants of the data set (loaded once, before any load thread)."""
    from export.data import load_dataset

    return load_dataset().features[:rows].astype(np.float32)


@dataclass
class Outcome:
    """One request under load."""

    start: float
    end: float
    ok: bool
    error: str = ""


def load(url: str, stop: threading.Event, outcomes: list[Outcome], deadline: float) -> None:
    """Send 1024-row requests until ``stop`` (or ``deadline``); record each outcome."""
    import tritonclient.http as httpclient

    rows = _batch()
    client = httpclient.InferenceServerClient(url, network_timeout=30, connection_timeout=5)
    inputs = [httpclient.InferInput("features", list(rows.shape), "FP32")]
    inputs[0].set_data_from_numpy(rows, binary_data=True)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            start = time.monotonic()
            try:
                result = client.infer("credit_scoring", inputs).as_numpy("probability")
                ok = result is not None and result.shape == (len(rows), 1)
                outcomes.append(Outcome(start, time.monotonic(), bool(ok)))
            except Exception as error:  # noqa: BLE001 - every failure is data here
                outcomes.append(Outcome(start, time.monotonic(), False, repr(error)[:200]))
                if stop.is_set() or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
    finally:
        client.close()


def start_load(url: str, threads: int, seconds: float) -> tuple[threading.Event, list, list]:
    """Start ``threads`` load threads (bounded by ``seconds``)."""
    _batch()
    stop, outcomes = threading.Event(), []
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(target=load, args=(url, stop, outcomes, deadline), daemon=True)
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    return stop, outcomes, workers


@pytest.mark.triton
def test_probe_timings_fit_measured_startup_and_load(
    started: Started, figures: dict[str, str]
) -> None:
    """(c) Startup window >> measured time to ready; under load the probes keep passing.

    Under load a probe's request waits behind 1024-row batches in every step. The probes'
    latency is reported, not asserted (this machine is shared); asserted is what load must
    never do: make the ensemble answer a probe wrongly. A run that failed could only have
    hit its own deadline, and the kubelet then needs failureThreshold of those in a row.
    """
    startup = started.container["startupProbe"]
    window = startup.get("initialDelaySeconds", 0) + (
        startup["periodSeconds"] * startup["failureThreshold"]
    )
    # The NGC image, a cold node and an S3 download are slower than this machine: 10x margin.
    assert window >= max(60.0, 10 * started.to_ready), (window, started.to_ready)
    stop, outcomes, workers = start_load(started.server.http_url, threads=4, seconds=30)
    runs: dict[str, list[ProbeRun]] = {name: [] for name in EXEC_PROBES}
    try:
        time.sleep(1.0)
        for _ in range(8):
            for name in EXEC_PROBES:
                runs[name].append(run_probe(probe_argv(started, name)))
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert outcomes and all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    for name, done in runs.items():
        for run in done:
            assert run.code == 0 or "TimeoutError" in run.stderr, (name, run.stderr)
    summary = []
    for name, done in runs.items():
        timeout = started.container[name]["timeoutSeconds"]
        slow = sum(run.code != 0 for run in done)
        summary.append(
            f"{name} max {max(r.seconds for r in done):.2f} s of its {timeout} s "
            f"(missed its deadline {slow} of {len(done)})"
        )
    figures["exec probes under load (4 clients, 1024-row requests)"] = (
        "; ".join(summary) + f"; {len(outcomes)} requests meanwhile"
    )


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is required for the TLS test in CI")
        pytest.skip("openssl not installed")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "rsa:2048", "-nodes"]
    run("req", "-x509", *key, "-days", "1", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out",
        "ca.crt")  # fmt: skip
    sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    for name, subject, extra in (
        ("tls", "/CN=localhost", ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]),
        ("client", "/CN=credit-scoring-client", []),
    ):
        run("req", *key, "-subj", subject, *extra, "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", *sign, "-copy_extensions", "copy", "-out",
            f"{name}.crt")  # fmt: skip
    return {n: directory / n for n in ("ca.crt", "tls.crt", "tls.key", "client.crt", "client.key")}


@pytest.mark.triton
def test_public_overlay_grpc_requires_a_client_certificate(
    manifests: dict[str, list[dict]], tmp_path: Path, holdout: np.ndarray, reference: Any
) -> None:
    """The public overlay's Triton args (its TLS flags) on the local 2.51: gRPC scores only
    over TLS with a client certificate of the CA; HTTP (behind the Ingress) and the probes are
    unchanged."""
    import tritonclient.grpc as grpcclient

    container = triton_container(manifests[PUBLIC])
    mount = Path(flag(container["args"], "grpc-server-cert")).parent
    certs = make_certificates(tmp_path / "tls")
    run = start_container_server(
        manifests, tmp_path, "public.log", overlay=PUBLIC, paths={str(mount): tmp_path / "tls"}
    )
    rows = holdout[:8]

    def score(**tls: Any) -> np.ndarray:
        client = grpcclient.InferenceServerClient(run.server.grpc_url, **tls)
        try:
            inputs = [grpcclient.InferInput("features", list(rows.shape), "FP32")]
            inputs[0].set_data_from_numpy(rows)
            result = client.infer("credit_scoring", inputs, client_timeout=10)
            return result.as_numpy("probability")
        finally:
            client.close()

    try:
        trusted = score(
            ssl=True,
            root_certificates=str(certs["ca.crt"]),
            private_key=str(certs["client.key"]),
            certificate_chain=str(certs["client.crt"]),
        )
        np.testing.assert_allclose(trusted, reference.score(rows), atol=1e-6)
        refused = []
        for tls in ({}, {"ssl": True, "root_certificates": str(certs["ca.crt"])}):
            try:
                score(**tls)
            except Exception as error:  # noqa: BLE001 - any refusal will do
                refused.append(f"{type(error).__name__}: {str(error)[:120]}")
        assert len(refused) == 2, f"scored without a client certificate: {refused}"
        assert all(run_probe(probe_argv(run, p)).code == 0 for p in EXEC_PROBES)
    finally:
        run.server.stop()


PYTHON_STEPS = sorted(name for name, c in model_configs().items() if c.backend == "python")


def exact_scores(started: Started, holdout: np.ndarray, reference: Any) -> int:
    """Rows of 256 holdout applicants whose answer differs from the in-process reference."""
    import tritonclient.http as httpclient

    rows = holdout[:256]
    client = httpclient.InferenceServerClient(started.server.http_url, network_timeout=60)
    try:
        inputs = [httpclient.InferInput("features", list(rows.shape), "FP32")]
        inputs[0].set_data_from_numpy(rows, binary_data=True)
        result = client.infer("credit_scoring", inputs)
    finally:
        client.close()
    expected = reference.decide(rows)
    probability = result.as_numpy("probability")[:, 0]
    decision = result.as_numpy("decision")[:, 0].astype(str)
    wrong = np.abs(probability - reference.score(rows)[:, 0]) > 1e-6
    wrong |= decision != expected["decision"]
    wrong |= result.as_numpy("score")[:, 0] != expected["score"]
    return int(wrong.sum())


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.parametrize("step", PYTHON_STEPS)
def test_probe_sees_a_killed_python_step_and_a_restart_heals_it(
    manifests: dict[str, list[dict]],
    tmp_path: Path,
    step: str,
    holdout: np.ndarray,
    reference: Any,
    figures: dict[str, str],
) -> None:
    """kill -9 of a python step's stub: health stays 200, the probe fails at its next run;
    a restart with the same argv and ports (what the kubelet does after liveness fails)
    brings back a passing probe and exact scores.

    Nothing here is timed against a limit: the first probe run after the kill must fail (so
    it fails within one probe period), and the figures report how long each phase took.
    """
    from reliability.traffic import stub_pid

    run = start_container_server(manifests, tmp_path, "before.log")
    ready_argv = probe_argv(run, "readinessProbe")
    try:
        costs = [run_probe(ready_argv) for _ in range(5)]
        assert all(c.code == 0 for c in costs), [c.stderr for c in costs]
        assert exact_scores(run, holdout, reference) == 0
        victim = stub_pid(run.server, step)
        assert victim is not None, f"no python stub for {step}"
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        after_kill = run_probe(ready_argv)
        to_failing = time.monotonic() - killed_at
        live_status = http(f"http://{run.server.http_url}/v2/health/live")
        ready_status = http(f"http://{run.server.http_url}/v2/health/ready")
        liveness = run_probe(probe_argv(run, "livenessProbe"))
        local_ports = {
            "http_port": run.server.http_port,
            "grpc_port": run.server.grpc_port,
            "metrics_port": run.server.metrics_port,
        }
        stop_at = time.monotonic()
        run.server.stop()
        stopped = time.monotonic() - stop_at
    finally:
        run.server.stop()
    assert after_kill.code == 1, after_kill
    assert after_kill.stderr.count("\n") == 0 and "HTTP 500" in after_kill.stderr
    assert liveness.code == 1, liveness
    assert f"'{step}_0_0' is not healthy" in after_kill.stderr, after_kill.stderr

    restart_at = time.monotonic()
    again = start_container_server(manifests, tmp_path, "after.log", local_ports=local_ports)
    try:
        to_startup = time.monotonic() - restart_at  # start_container_server waits for ready
        passes = run_probe(probe_argv(again, "readinessProbe"))
        to_ready = time.monotonic() - restart_at
        assert passes.code == 0, passes
        assert run_probe(probe_argv(again, "livenessProbe")).code == 0
        assert exact_scores(again, holdout, reference) == 0
    finally:
        again.server.stop()

    wall = sorted(c.seconds for c in costs)
    figures[f"kill -9 {step} stub -> probe fails"] = (
        f"{to_failing:.2f} s (the first run after the kill: exit 1, {after_kill.stderr!r}); "
        f"/v2/health/live {live_status}, /v2/health/ready {ready_status} meanwhile"
    )
    figures[f"kill -9 {step}: restart -> ready"] = (
        f"SIGTERM -> exit {stopped:.2f} s (a dead stub holds the exit until "
        f"--exit-timeout-secs); start -> /v2/health/ready {to_startup:.2f} s, "
        f"-> exec probe passes {to_ready:.2f} s; 256 rows exact again"
    )
    figures["probe cost (5 runs on an idle server)"] = (
        f"wall {wall[len(wall) // 2]:.3f} s median / {wall[-1]:.3f} s max, "
        f"CPU {max(c.cpu_seconds for c in costs):.3f} s max, "
        f"peak RSS {max(c.max_rss_mib for c in costs):.1f} MiB"
    )


def _drain(
    manifests: dict[str, list[dict]], tmp_path: Path, client_window: float, exit_timeout: int
) -> tuple[int, float, float, list[Outcome], str]:
    """Load, SIGTERM, keep the clients sending for ``client_window`` s, then close them.

    Returns (exit code, seconds from SIGTERM to exit, SIGTERM time, outcomes, log).
    """
    run = start_container_server(manifests, tmp_path, "drain.log", exit_timeout)
    server = run.server
    try:
        stop, outcomes, workers = start_load(server.http_url, threads=8, seconds=60)
        time.sleep(2.0)  # steady state: every thread has a request queued or running
        assert server.process is not None
        process, exited = server.process, []
        watcher = threading.Thread(
            target=lambda: exited.append((process.wait(), time.monotonic())), daemon=True
        )
        watcher.start()
        t_signal = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(client_window)
        stop.set()  # clients stop sending and close their keep-alive connections
        for worker in workers:
            worker.join(exit_timeout + 30)
        watcher.join(exit_timeout + 15)
        assert exited, "tritonserver did not exit"
        code, drained = exited[0][0], exited[0][1] - t_signal
    finally:
        server.stop()
    return code, drained, t_signal, outcomes, (tmp_path / "drain.log").read_text("utf-8", "replace")


@pytest.mark.triton
@pytest.mark.slow
def test_sigterm_under_load_lets_inflight_requests_finish(
    manifests: dict[str, list[dict]], tmp_path: Path, figures: dict[str, str]
) -> None:
    """(d) SIGTERM during load: every request in flight, or sent on an open connection while
    the pod drains, completes; once clients close their connections Triton exits cleanly,
    well within --exit-timeout-secs (the window preStop + grace period are sized for)."""
    args = triton_container(manifests["prod"])["args"]
    exit_timeout = int(flag(args, "exit-timeout-secs"))
    code, drained, t_signal, outcomes, log = _drain(manifests, tmp_path, 1.0, exit_timeout)
    assert code == 0, log[-3000:]
    assert drained < exit_timeout, drained
    in_flight = [o for o in outcomes if o.start < t_signal < o.end]
    during = [o for o in outcomes if o.start >= t_signal]
    assert in_flight, "no request was in flight at SIGTERM: the test proved nothing"
    assert during, "no request was sent while draining"
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    assert "Waiting for in-flight requests to complete" in log
    figures["SIGTERM under load"] = (
        f"{len(in_flight)} requests in flight at the signal and {len(during)} sent during the "
        f"1 s drain window all completed; exit code 0 after {drained:.2f} s "
        f"(--exit-timeout-secs={exit_timeout})"
    )


@pytest.mark.triton
@pytest.mark.slow
def test_clients_that_never_close_are_cut_at_the_exit_timeout(
    manifests: dict[str, list[dict]], tmp_path: Path
) -> None:
    """Pins Triton 2.51's drain limit (exit timeout shortened to 3 s to keep this quick).

    Triton waits for open HTTP connections and keeps serving them until --exit-timeout-secs;
    requests still running then are cut and the process dies (SIGSEGV on the forced exit).
    This is why the grace period exceeds preStop + exit timeout and why clients must retry
    (scoring is idempotent). If an upgrade closes idle keep-alive connections itself, this
    test fails: revisit the drain settings then.
    """
    code, drained, _, outcomes, log = _drain(manifests, tmp_path, 8.0, exit_timeout=3)
    assert "Found 8 HTTP service connections" in log
    assert "Exit timeout expired" in log
    assert code != 0
    assert 3 <= drained < 8, drained
    assert any(not o.ok for o in outcomes)
