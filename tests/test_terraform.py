"""Terraform for Yandex Cloud (terraform/): HCL structure, variable validation, fmt and checkov.

The structure tests parse the HCL with python-hcl2 8.x and resolve ``var.*`` references from
``terraform.tfvars.example`` over the variable defaults, so they check the configuration a
platform team would apply. Providers cannot be downloaded here, so ``terraform validate`` runs in
CI only; ``terraform plan`` on a copy of ``variables.tf`` alone needs no provider and exercises the
real variable validations.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:
    import hcl2
except ImportError:  # CI installs it; a bare environment skips the structure tests.
    hcl2 = None

ROOT = Path(__file__).resolve().parents[1]
TF_DIR = ROOT / "terraform"
TFVARS_EXAMPLE = TF_DIR / "terraform.tfvars.example"
BACKEND_EXAMPLE = TF_DIR / "backend.tf.example"
INFRA_VENV = ROOT / ".cache" / "venvs" / "infra-tools"
INFRA_REQUIREMENTS = ROOT / "requirements" / "infra-tools.txt"
TF_ENV = {
    **os.environ,
    "TF_CLI_CONFIG_FILE": os.devnull,
    "BC_SKIP_MAPPING": "TRUE",
    "TF_IN_AUTOMATION": "1",
}
ALLOWED_ZONES = {"ru-central1-a", "ru-central1-b", "ru-central1-d"}
PUBLIC_CIDRS = {"0.0.0.0/0", "::/0"}
PRIMITIVE_ROLES = {"admin", "editor", "viewer"}
# The Deployment in k8s/base: 3 Triton replicas (HPA up to 12), one surge pod during a rolling
# update; a node keeps about one vCPU for the system.
REPLICAS, SURGE, HPA_MAX, SYSTEM_VCPU = 3, 1, 12, 1


def deployment_pod_vcpu() -> int:
    """The Triton pod's CPU request in k8s/base/deployment.yaml (tests/test_deploy.py derives
    it from the model configs)."""
    text = (ROOT / "k8s" / "base" / "deployment.yaml").read_text()
    match = re.search(r'^\s+requests:\n\s+cpu: "(\d+)"$', text, re.M)
    assert match, "no whole-core cpu request in k8s/base/deployment.yaml"
    return int(match.group(1))


POD_VCPU = deployment_pod_vcpu()
# The only checkov findings skipped on purpose, each with its reason inline in the HCL.
EXPECTED_CHECKOV_SKIPS = {"CKV_YC_5"}

requires_hcl2 = pytest.mark.skipif(
    hcl2 is None,
    reason="python-hcl2 8.x is not installed in this environment (pip install python-hcl2==8.1.4)",
)
TERRAFORM = shutil.which("terraform")
requires_terraform = pytest.mark.skipif(
    TERRAFORM is None, reason="terraform binary not on PATH (CI machines have Terraform 1.11)"
)
VAR_REF = re.compile(r"^\$\{var\.([a-z0-9_]+)((?:\.[a-z0-9_]+)*)\}$")


# --------------------------------------------------------------------------------------------
# Loading and resolving the HCL
# --------------------------------------------------------------------------------------------


def parse_hcl(text: str) -> dict[str, Any]:
    """Parse HCL text with python-hcl2 8.x, string quotes stripped."""
    options = hcl2.SerializationOptions(strip_string_quotes=True)
    return hcl2.loads(text, serialization_options=options)


@dataclass
class Module:
    """The blocks of one Terraform directory, merged over its *.tf files."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        """One resource body; fails the test when it is missing."""
        assert (rtype, name) in self.resources, f"missing resource {rtype}.{name}"
        return self.resources[(rtype, name)]

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        """All resources of one type, by name."""
        return {name: body for (kind, name), body in self.resources.items() if kind == rtype}


def load_module(directory: Path) -> Module:
    """Parse every *.tf file of a directory."""
    module = Module()
    for path in sorted(directory.glob("*.tf")):
        parsed = parse_hcl(path.read_text())
        module.files[path.name] = parsed
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    module.resources[(rtype, name)] = body
        for entry in parsed.get("variable", []):
            module.variables.update(entry)
        for entry in parsed.get("output", []):
            module.outputs.update(entry)
        module.terraform.extend(parsed.get("terraform", []))
    return module


def variable_values(module: Module, tfvars: Path | None = TFVARS_EXAMPLE) -> dict[str, Any]:
    """Variable defaults overlaid with the example tfvars (what a team would apply)."""
    values = {name: body["default"] for name, body in module.variables.items() if "default" in body}
    if tfvars is not None:
        values.update(
            {k: v for k, v in parse_hcl(tfvars.read_text()).items() if k != "__comments__"}
        )
    return values


def resolve(value: Any, values: dict[str, Any]) -> Any:
    """Replace whole-value ``${var.x}`` / ``${var.x.y}`` references; leave other expressions."""
    if isinstance(value, str):
        match = VAR_REF.match(value)
        if match:
            name, attrs = match.group(1), [a for a in match.group(2).split(".") if a]
            assert name in values, f"var.{name} has no default and no example value"
            out = values[name]
            for attr in attrs:
                out = out[attr]
            return out
        return value
    if isinstance(value, list):
        return [resolve(item, values) for item in value]
    return value


def flat_strings(value: Any) -> list[Any]:
    """Flatten nested lists (a list attribute holding a resolved list variable)."""
    if isinstance(value, list):
        return [item for element in value for item in flat_strings(element)]
    return [value]


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The nested blocks called ``name`` of a body."""
    return [b for b in body.get(name, []) if isinstance(b, dict)]


def dynamic_contents(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The ``content`` of ``dynamic "<name>"`` blocks, with their ``for_each``."""
    out = []
    for entry in body.get("dynamic", []):
        if name in entry:
            for content in entry[name].get("content", []):
                out.append({**content, "__for_each__": entry[name].get("for_each")})
    return out


# --------------------------------------------------------------------------------------------
# Checkers (also run against mutated copies, so they are known to fail)
# --------------------------------------------------------------------------------------------


def _rule_ports(rule: dict[str, Any], values: dict[str, Any]) -> set[int] | None:
    """The TCP/UDP ports a rule opens; None for all ports."""
    port = resolve(rule.get("port"), values)
    if port is not None:
        return None if int(port) == -1 else {int(port)}
    low, high = resolve(rule.get("from_port"), values), resolve(rule.get("to_port"), values)
    if low is None or high is None:
        return None
    return set(range(int(low), int(high) + 1))


def public_ingress_violations(module: Module, values: dict[str, Any]) -> list[str]:
    """Ingress open to the internet on anything but TCP to the Triton service NodePorts."""
    allowed = {int(p) for p in values["triton_node_ports"].values()}
    rules: list[tuple[str, dict[str, Any]]] = []
    for name, body in module.of_type("yandex_vpc_security_group").items():
        for rule in blocks(body, "ingress") + dynamic_contents(body, "ingress"):
            rules.append((f"yandex_vpc_security_group.{name}", rule))
    for name, body in module.of_type("yandex_vpc_security_group_rule").items():
        if str(resolve(body.get("direction"), values)).lower() == "ingress":
            rules.append((f"yandex_vpc_security_group_rule.{name}", body))

    problems = []
    for where, rule in rules:
        cidrs = flat_strings(resolve(rule.get("v4_cidr_blocks", []), values))
        cidrs += flat_strings(resolve(rule.get("v6_cidr_blocks", []), values))
        unresolved = [c for c in cidrs if isinstance(c, str) and "${" in c]
        if unresolved:
            problems.append(f"{where}: cannot verify CIDR expression {unresolved}")
            continue
        if not PUBLIC_CIDRS & set(cidrs):
            continue
        protocol = str(resolve(rule.get("protocol"), values)).upper()
        ports = _rule_ports(rule, values)
        if protocol != "TCP" or ports is None or not ports <= allowed:
            shown = "all" if ports is None else sorted(ports)[:5]
            problems.append(f"{where}: {protocol} ports {shown} open to {sorted(cidrs)}")
    return problems


def bucket_violations(module: Module, values: dict[str, Any]) -> list[str]:
    """Buckets that are public, unversioned or not encrypted with a KMS key of this module."""
    problems = []
    buckets = module.of_type("yandex_storage_bucket")
    if not buckets:
        problems.append("no yandex_storage_bucket")
    for name, body in buckets.items():
        where = f"yandex_storage_bucket.{name}"
        if resolve(body.get("acl", "private"), values) != "private":
            problems.append(f"{where}: acl {body['acl']}")
        if "grant" in body or "policy" in body:
            problems.append(f"{where}: inline grant/policy")
        flags = blocks(body, "anonymous_access_flags")
        if not flags or any(
            resolve(flags[0].get(k), values) is not False for k in ("read", "list")
        ):
            problems.append(f"{where}: anonymous read/list not explicitly disabled")
        versioning = blocks(body, "versioning")
        if not versioning or resolve(versioning[0].get("enabled"), values) is not True:
            problems.append(f"{where}: versioning not enabled")
        sse = [
            default
            for config in blocks(body, "server_side_encryption_configuration")
            for rule in blocks(config, "rule")
            for default in blocks(rule, "apply_server_side_encryption_by_default")
        ]
        if not sse or sse[0].get("sse_algorithm") != "aws:kms":
            problems.append(f"{where}: no aws:kms server-side encryption")
        elif not str(sse[0].get("kms_master_key_id", "")).startswith("${yandex_kms_symmetric_key."):
            problems.append(f"{where}: encryption key is not a KMS key of this module")
    for rtype in ("yandex_storage_bucket_iam_binding", "yandex_storage_bucket_grant"):
        for name, body in module.of_type(rtype).items():
            text = json.dumps(body)
            if "allUsers" in text or "allAuthenticatedUsers" in text or "AllUsers" in text:
                problems.append(f"{rtype}.{name}: grants a public system group")
    return problems


def copy_module(tmp_path: Path) -> Path:
    """A scratch copy of terraform/ to mutate."""
    target = tmp_path / "terraform"
    shutil.copytree(TF_DIR, target, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    return target


def replace_once(path: Path, old: str, new: str) -> None:
    """Edit a copied file; the anchor must exist exactly once."""
    text = path.read_text()
    assert text.count(old) == 1, f"anchor not unique in {path.name}: {old!r}"
    path.write_text(text.replace(old, new))


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module() -> Module:
    if hcl2 is None:
        pytest.skip("python-hcl2 8.x is not installed in this environment")
    return load_module(TF_DIR)


@pytest.fixture(scope="module")
def values(module: Module) -> dict[str, Any]:
    return variable_values(module)


# --------------------------------------------------------------------------------------------
# Layout, versions, variables, outputs
# --------------------------------------------------------------------------------------------


# Where each kind of block lives (STYLE.md: one file per concern). Resource types by prefix.
RESOURCE_FILES = {
    "yandex_vpc_": "network.tf",
    "yandex_iam_": "iam.tf",
    "yandex_resourcemanager_": "iam.tf",
    "yandex_kms_": "kms.tf",
    "yandex_kubernetes_": "k8s.tf",
    "yandex_storage_": "storage.tf",
    "yandex_container_registry": "registry.tf",
}
BLOCK_FILES = {"variable": "variables.tf", "output": "outputs.tf", "terraform": "versions.tf"}


def _home(block: str, rtype: str = "") -> str | None:
    if block != "resource":
        return BLOCK_FILES.get(block)
    return next((f for prefix, f in RESOURCE_FILES.items() if rtype.startswith(prefix)), None)


def misplaced_blocks(module: Module) -> list[str]:
    """Blocks outside the file of their concern, and resources no file is named for."""
    found = []
    for filename, parsed in module.files.items():
        for block, entries in parsed.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                kinds = entry.keys() if block == "resource" else [""]
                for rtype in kinds:
                    home = _home(block, rtype)
                    if block == "resource" and home is None:
                        found.append(f"{filename}: resource {rtype} has no file in RESOURCE_FILES")
                    elif home is not None and home != filename:
                        name = f"{block} {rtype}".strip()
                        found.append(f"{filename}: {name} belongs in {home}")
    return found


@requires_hcl2
def test_layout_follows_the_style(module: Module) -> None:
    assert misplaced_blocks(module) == []
    assert {"README.md", "terraform.tfvars.example", "backend.tf.example"} <= {
        p.name for p in TF_DIR.iterdir()
    }


@requires_hcl2
def test_the_layout_check_sees_a_misplaced_block(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'variable "x" {\n  type = string\n}\n'
        'resource "yandex_vpc_network" "n" {\n  name = "n"\n}\n'
        'resource "yandex_compute_instance" "vm" {\n  name = "vm"\n}\n'
    )
    assert misplaced_blocks(load_module(tmp_path)) == [
        "main.tf: variable belongs in variables.tf",
        "main.tf: resource yandex_vpc_network belongs in network.tf",
        "main.tf: resource yandex_compute_instance has no file in RESOURCE_FILES",
    ]


@requires_hcl2
def test_hcl2_is_the_8x_parser_not_checkovs_fork() -> None:
    # bc-python-hcl2 (checkov's fork) installs the same `hcl2` package without this API.
    assert hasattr(hcl2, "SerializationOptions"), (
        f"`hcl2` at {hcl2.__file__} is not python-hcl2 8.x; was checkov installed into this venv?"
    )


def test_provider_and_terraform_pinned(module: Module) -> None:
    assert len(module.terraform) == 1, "exactly one terraform {} block (versions.tf)"
    block = module.terraform[0]
    assert "terraform" in module.files["versions.tf"]
    assert re.fullmatch(r"~> 1\.\d+", block["required_version"])
    providers = block["required_providers"][0]
    assert set(providers) - {"__is_block__"} == {"yandex"}
    assert providers["yandex"]["source"] == "yandex-cloud/yandex"
    assert re.fullmatch(r"\d+\.\d+\.\d+", providers["yandex"]["version"]), "pin an exact version"


def test_variables_typed_described_validated(module: Module) -> None:
    assert "resource" not in module.files["variables.tf"], "no resources in variables.tf"
    for name, body in module.variables.items():
        assert body.get("type"), f"var.{name} has no type"
        assert len(body.get("description", "")) > 10, f"var.{name} has no description"
    must_validate = {
        "cloud_id",
        "folder_id",
        "zones",
        "subnet_cidrs",
        "kubernetes_version",
        "release_channel",
        "master_allowed_cidrs",
        "service_ingress_cidrs",
        "triton_node_ports",
        "node_platform_id",
        "node_cores",
        "node_memory_gb",
        "node_core_fraction",
        "node_disk_type",
        "node_disk_size_gb",
        "node_autoscaling",
    }
    for name in must_validate:
        assert blocks(module.variables[name], "validation"), f"var.{name} has no validation"


def test_example_tfvars_sets_only_declared_variables(module: Module) -> None:
    example = parse_hcl(TFVARS_EXAMPLE.read_text())
    unknown = set(example) - set(module.variables) - {"__comments__"}
    assert not unknown, f"terraform.tfvars.example sets undeclared variables {sorted(unknown)}"
    required = {n for n, b in module.variables.items() if "default" not in b}
    assert required <= set(example), f"example misses required {sorted(required - set(example))}"


def test_outputs_described_and_guarded(module: Module) -> None:
    for name, body in module.outputs.items():
        assert body.get("description"), f"output {name} has no description"
        assert str(body["value"]).startswith("${try("), f"output {name} does not use try()"
    needed = {"cluster_id", "registry_id", "model_bucket", "drift_bucket", "kubeconfig_command"}
    assert needed <= set(module.outputs), f"missing outputs {sorted(needed - set(module.outputs))}"
    assert (
        "yc managed-kubernetes cluster get-credentials"
        in module.outputs["kubeconfig_command"]["value"]
    )
    for name, body in module.outputs.items():
        if "secret" in name:
            assert body.get("sensitive") is True, f"output {name} must be sensitive"


def test_backend_example_is_s3_on_object_storage() -> None:
    if hcl2 is None:
        pytest.skip("python-hcl2 8.x is not installed in this environment")
    parsed = parse_hcl(BACKEND_EXAMPLE.read_text())
    backend = parsed["terraform"][0]["backend"][0]["s3"]
    assert backend["endpoints"]["s3"] == "https://storage.yandexcloud.net"
    assert backend["key"].endswith(".tfstate")
    assert backend.get("dynamodb_table") or backend.get("use_lockfile"), "state must be locked"


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def test_three_zones_and_non_overlapping_subnets(module: Module, values: dict[str, Any]) -> None:
    zones = values["zones"]
    assert len(zones) == 3 and set(zones) == ALLOWED_ZONES
    assert module.variables["zones"]["default"] == zones, "example and default zones differ"

    subnet = module.resource("yandex_vpc_subnet", "k8s")
    assert subnet["for_each"] == "${toset(var.zones)}"
    assert subnet["zone"] == "${each.key}"
    assert subnet["route_table_id"] == "${yandex_vpc_route_table.nat.id}"

    cidrs = values["subnet_cidrs"]
    assert set(cidrs) == set(zones), "one subnet CIDR per zone"
    networks = {z: ipaddress.ip_network(c) for z, c in cidrs.items()}
    networks["pods"] = ipaddress.ip_network(values["cluster_ipv4_range"])
    networks["services"] = ipaddress.ip_network(values["service_ipv4_range"])
    names = sorted(networks)
    for i, a in enumerate(names):
        assert networks[a].is_private, f"{a} {networks[a]} is not a private range"
        for b in names[i + 1 :]:
            assert not networks[a].overlaps(networks[b]), f"{a} overlaps {b}"


def test_private_nodes_leave_through_nat(module: Module) -> None:
    gateway = module.resource("yandex_vpc_gateway", "nat")
    assert "shared_egress_gateway" in gateway
    routes = blocks(module.resource("yandex_vpc_route_table", "nat"), "static_route")
    assert any(
        r["destination_prefix"] == "0.0.0.0/0" and r["gateway_id"] == "${yandex_vpc_gateway.nat.id}"
        for r in routes
    )
    for name, group in module.of_type("yandex_kubernetes_node_group").items():
        for template in blocks(group, "instance_template"):
            for nic in blocks(template, "network_interface"):
                assert nic.get("nat") is False, f"node group {name} has public addresses"


def test_public_ingress_only_on_the_service_ports(module: Module, values: dict[str, Any]) -> None:
    assert public_ingress_violations(module, values) == []
    service = module.resource("yandex_vpc_security_group", "triton_service")
    assert not blocks(service, "ingress"), "every service rule depends on service_ingress_cidrs"
    rules = dynamic_contents(service, "ingress")
    for rule in rules:  # no rule at all while the allow-list is empty
        assert rule["__for_each__"].startswith("${length(var.service_ingress_cidrs) > 0 ?")
        assert rule["v4_cidr_blocks"] == "${var.service_ingress_cidrs}"
        assert "TLS" in rule["description"]
    ports = {resolve(r["port"], values) for r in rules}
    assert ports == set(values["triton_node_ports"].values())
    # Even with the whole internet listed, only those two TLS NodePorts open.
    internet = {**values, "service_ingress_cidrs": ["0.0.0.0/0"]}
    assert public_ingress_violations(module, internet) == []
    # The API is never open to the world, whatever the example says.
    master = module.resource("yandex_vpc_security_group", "k8s_master")
    for rule in blocks(master, "ingress"):
        assert rule["v4_cidr_blocks"] == "${var.master_allowed_cidrs}"


@pytest.mark.parametrize(
    ("anchor", "extra"),
    [
        (  # SSH from anywhere in a new rule resource
            None,
            'resource "yandex_vpc_security_group_rule" "ssh" {\n'
            "  security_group_binding = yandex_vpc_security_group.k8s_nodes.id\n"
            '  direction      = "ingress"\n  protocol       = "TCP"\n  port           = 22\n'
            '  v4_cidr_blocks = ["0.0.0.0/0"]\n}\n',
        ),
        (  # every port of the nodes opened to the internet
            "    v4_cidr_blocks = [var.cluster_ipv4_range, var.service_ipv4_range]",
            '    v4_cidr_blocks = [var.cluster_ipv4_range, var.service_ipv4_range, "0.0.0.0/0"]',
        ),
        (  # the API on 6443 opened to the internet
            "    port           = 6443\n    v4_cidr_blocks = var.master_allowed_cidrs",
            '    port           = 6443\n    v4_cidr_blocks = ["0.0.0.0/0"]',
        ),
    ],
    ids=["ssh-rule", "nodes-any", "api-6443"],
)
@requires_hcl2
def test_ingress_checker_catches_an_open_port(
    tmp_path: Path, anchor: str | None, extra: str
) -> None:
    copy = copy_module(tmp_path)
    if anchor is None:
        (copy / "network.tf").write_text((copy / "network.tf").read_text() + "\n" + extra)
    else:
        replace_once(copy / "network.tf", anchor, extra)
    mutated = load_module(copy)
    problems = public_ingress_violations(mutated, variable_values(mutated))
    assert problems, "the checker missed an internet-facing port"


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------


def test_regional_cluster_with_kms_and_pinned_version(module: Module) -> None:
    cluster = module.resource("yandex_kubernetes_cluster", "main")
    assert cluster["kms_provider"][0]["key_id"] == "${yandex_kms_symmetric_key.k8s_secrets.id}"
    assert cluster["network_policy_provider"] in {"CALICO", "CILIUM"}
    master = cluster["master"][0]
    assert master["version"] == "${var.kubernetes_version}"
    assert "zonal" not in master
    regional = master["regional"][0]
    locations = dynamic_contents(regional, "location")
    assert len(locations) == 1 and locations[0]["__for_each__"] == "${var.zones}"
    assert locations[0]["subnet_id"] == "${yandex_vpc_subnet.k8s[location.value].id}"
    assert set(master["security_group_ids"]) == {
        "${yandex_vpc_security_group.k8s_main.id}",
        "${yandex_vpc_security_group.k8s_master.id}",
    }
    assert cluster["service_account_id"] != cluster["node_service_account_id"]


def test_node_groups_span_the_zones_and_fit_the_deployment(
    module: Module, values: dict[str, Any]
) -> None:
    groups = module.of_type("yandex_kubernetes_node_group")
    assert set(groups) == {"workers"}
    group = groups["workers"]
    # One group per subnet, i.e. per zone of var.zones (validated to be exactly three).
    assert group["for_each"] == "${yandex_vpc_subnet.k8s}"
    assert blocks(group, "allocation_policy")[0]["location"][0]["zone"] == "${each.key}"
    assert group["version"] == "${var.kubernetes_version}"
    nic = group["instance_template"][0]["network_interface"][0]
    assert nic["subnet_ids"] == ["${each.value.id}"]
    assert "${yandex_vpc_security_group.triton_service.id}" in nic["security_group_ids"]

    scale = resolve(group["scale_policy"][0]["auto_scale"][0], values)
    bounds = {k: resolve(v, values) for k, v in scale.items() if k != "__is_block__"}
    zones = len(values["zones"])
    pods_per_node = (values["node_cores"] - SYSTEM_VCPU) // POD_VCPU
    assert pods_per_node >= 1, "a node must hold a Triton pod"
    assert bounds["min"] >= 1, "every zone keeps a node (one replica per zone)"
    assert bounds["min"] * zones * pods_per_node >= REPLICAS, "the replicas fit at rest"
    assert bounds["max"] * zones * pods_per_node >= HPA_MAX + SURGE, "room for HPA max + surge"
    assert bounds["min"] <= bounds["initial"] <= bounds["max"]
    deploy = group["deploy_policy"][0]
    assert deploy["max_unavailable"] == 0 and deploy["max_expansion"] >= 1


# --------------------------------------------------------------------------------------------
# IAM, KMS, registry, storage
# --------------------------------------------------------------------------------------------


def test_service_accounts_least_privilege(module: Module) -> None:
    assert set(module.of_type("yandex_iam_service_account")) == {
        "cluster",
        "nodes",
        "triton",
        "drift",
    }
    folder = module.of_type("yandex_resourcemanager_folder_iam_member")
    assert set(folder) == {"cluster"}, "only the cluster SA holds folder-wide roles"
    assert folder["cluster"]["member"] == "serviceAccount:${yandex_iam_service_account.cluster.id}"
    assert not module.of_type("yandex_resourcemanager_folder_iam_binding")
    assert folder["cluster"]["for_each"] == "${toset(local.cluster_folder_roles)}"
    roles_expr = module.files["iam.tf"]["locals"][0]["cluster_folder_roles"]
    granted = set(re.findall(r'"([a-z][a-zA-Z0-9.-]+)"', roles_expr))
    assert granted == {
        "k8s.clusters.agent",
        "vpc.publicAdmin",
        "load-balancer.admin",
        "logging.writer",
    }

    roles_everywhere = re.findall(r'"role": "([^"]+)"', json.dumps(list(module.resources.values())))
    assert not set(roles_everywhere) & PRIMITIVE_ROLES, "no primitive roles"

    puller = module.resource("yandex_container_registry_iam_binding", "puller")
    assert puller["role"] == "container-registry.images.puller"
    assert puller["members"] == ["serviceAccount:${yandex_iam_service_account.nodes.id}"]

    viewer = module.resource("yandex_storage_bucket_iam_binding", "models_viewer")
    assert viewer["bucket"] == "${yandex_storage_bucket.models.bucket}"
    assert viewer["role"] == "storage.viewer"
    assert viewer["members"] == ["serviceAccount:${yandex_iam_service_account.triton.id}"]
    writer = module.resource("yandex_storage_bucket_iam_binding", "drift_uploader")
    assert writer["bucket"] == "${yandex_storage_bucket.drift.bucket}"
    assert writer["role"] == "storage.uploader"
    assert writer["members"] == ["serviceAccount:${yandex_iam_service_account.drift.id}"]


def test_kms_keys_rotated_and_scoped(module: Module) -> None:
    keys = module.of_type("yandex_kms_symmetric_key")
    assert set(keys) == {"k8s_secrets", "storage"}
    for name, key in keys.items():
        assert key.get("rotation_period"), f"key {name} does not rotate"
    members = module.of_type("yandex_kms_symmetric_key_iam_member")
    cluster = members["cluster_k8s_secrets"]
    assert cluster["symmetric_key_id"] == "${yandex_kms_symmetric_key.k8s_secrets.id}"
    assert cluster["member"] == "serviceAccount:${yandex_iam_service_account.cluster.id}"
    triton = members["triton_storage"]
    assert triton["symmetric_key_id"] == "${yandex_kms_symmetric_key.storage.id}"
    assert triton["role"] == "kms.keys.decrypter", "Triton only reads"


def test_buckets_private_versioned_encrypted(module: Module, values: dict[str, Any]) -> None:
    assert set(module.of_type("yandex_storage_bucket")) == {"models", "drift"}
    assert bucket_violations(module, values) == []
    assert module.of_type("yandex_container_registry"), "a Container Registry for the image"


@pytest.mark.parametrize(
    ("anchor", "replacement"),
    [
        (
            "    read        = false\n    list        = false",
            "    read        = true\n    list        = false",
        ),
        (
            "  force_destroy         = false\n",
            '  force_destroy         = false\n  acl = "public-read"\n',
        ),
        ("  versioning {\n    enabled = true\n  }\n", ""),
        ('        sse_algorithm     = "aws:kms"\n', ""),
    ],
    ids=["anonymous-read", "public-acl", "no-versioning", "no-kms"],
)
@requires_hcl2
def test_bucket_checker_catches_a_weakened_bucket(
    tmp_path: Path, anchor: str, replacement: str
) -> None:
    copy = copy_module(tmp_path)
    storage = copy / "storage.tf"
    text = storage.read_text()
    assert anchor in text, f"anchor missing: {anchor!r}"
    storage.write_text(text.replace(anchor, replacement, 1))  # weaken the first bucket only
    mutated = load_module(copy)
    assert bucket_violations(mutated, variable_values(mutated)), "the checker missed it"


# --------------------------------------------------------------------------------------------
# Terraform itself: formatting and the variable validations (no provider needed)
# --------------------------------------------------------------------------------------------


def run_terraform(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run terraform with the machine's missing CLI config silenced."""
    return subprocess.run(
        [TERRAFORM or "terraform", *args],
        cwd=cwd,
        env=TF_ENV,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@requires_terraform
def test_terraform_fmt_clean() -> None:
    result = run_terraform("fmt", "-check", "-recursive", "-diff", str(TF_DIR), cwd=ROOT)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"
    for example in (TFVARS_EXAMPLE, BACKEND_EXAMPLE):
        result = run_terraform("fmt", "-check", "-diff", "-", cwd=ROOT, stdin=example.read_text())
        assert result.returncode == 0, f"{example.name} is not formatted:\n{result.stdout}"


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """variables.tf alone, initialised: `terraform plan` evaluates the validations offline."""
    if TERRAFORM is None:
        pytest.skip("terraform binary not on PATH (CI machines have Terraform 1.11)")
    workdir = tmp_path_factory.mktemp("tf-variables")
    shutil.copy(TF_DIR / "variables.tf", workdir / "variables.tf")
    shutil.copy(TFVARS_EXAMPLE, workdir / "terraform.tfvars")
    result = run_terraform("init", "-input=false", "-no-color", cwd=workdir)
    assert result.returncode == 0, result.stderr
    return workdir


def plan_with(workdir: Path, *assignments: str) -> subprocess.CompletedProcess:
    """`terraform plan` of the variables alone with extra -var assignments."""
    args = ["plan", "-input=false", "-no-color", "-lock=false"]
    for assignment in assignments:
        args += ["-var", assignment]
    return run_terraform(*args, cwd=workdir)


def test_example_tfvars_pass_the_validations(variables_only: Path) -> None:
    result = plan_with(variables_only)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "assignment",
    [
        'zones=["ru-central1-a","ru-central1-b"]',
        'zones=["ru-central1-a","ru-central1-b","ru-central1-c"]',
        'zones=["ru-central1-a","ru-central1-a","ru-central1-b"]',
        'subnet_cidrs={"ru-central1-a"="10.10.0.0/20","ru-central1-b"="10.10.16.0/20"}',
        'master_allowed_cidrs=["0.0.0.0/0"]',
        "master_allowed_cidrs=[]",
        "release_channel=BETA",
        "kubernetes_version=1.31.2",
        "node_platform_id=gpu-standard-v3",
        "node_autoscaling={min=0,max=3,initial=1}",
        "node_autoscaling={min=1,max=1,initial=1}",
        "node_autoscaling={min=2,max=3,initial=1}",
        "triton_node_ports={https=8000,grpc=8001}",
        'service_ingress_cidrs=["0.0.0.0/0"]',
        'service_ingress_cidrs=["10.0.0.0/8","0.0.0.0/1"]',
        'service_ingress_cidrs=["2001:db8::/32"]',
        'service_ingress_cidrs=["203.0.113.0"]',
        "node_memory_gb=64",
        "folder_id=not-a-folder",
    ],
)
def test_variable_validation_rejects(variables_only: Path, assignment: str) -> None:
    result = plan_with(variables_only, assignment)
    assert result.returncode != 0, f"{assignment} was accepted"
    assert "Invalid value for variable" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "assignments",
    [
        ['service_ingress_cidrs=["198.51.100.0/24","10.0.0.0/8"]'],
        ['service_ingress_cidrs=["0.0.0.0/0"]', "allow_internet_clients=true"],
    ],
    ids=["allow-list", "internet-with-second-key"],
)
def test_variable_validation_accepts(variables_only: Path, assignments: list[str]) -> None:
    result = plan_with(variables_only, *assignments)
    assert result.returncode == 0, result.stderr


def test_defaults_open_nothing_to_the_internet(module: Module) -> None:
    """Private by default: no caller is allowed until the applier lists some."""
    assert module.variables["service_ingress_cidrs"]["default"] == []
    assert module.variables["allow_internet_clients"]["default"] is False
    example = parse_hcl(TFVARS_EXAMPLE.read_text())
    assert example["service_ingress_cidrs"] == [] and example["allow_internet_clients"] is False


# --------------------------------------------------------------------------------------------
# checkov, from its own venv
# --------------------------------------------------------------------------------------------


def infra_tools_python() -> Path:
    """The tools venv's python, created from requirements/infra-tools.txt when missing or stale."""
    python = INFRA_VENV / "bin" / "python"
    stamp = INFRA_VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= INFRA_REQUIREMENTS.stat().st_mtime:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(INFRA_VENV)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip>=24"], check=True, timeout=600)
    subprocess.run([*pip, "-r", str(INFRA_REQUIREMENTS)], check=True, timeout=1200)
    stamp.touch()
    return python


def run_checkov(directory: Path) -> tuple[dict[str, Any], str]:
    """checkov on one directory with the example values; (JSON report, stderr)."""
    checkov = infra_tools_python().parent / "checkov"
    result = subprocess.run(
        [
            str(checkov),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--var-file",
            str(directory / "terraform.tfvars.example"),
            "--output",
            "json",
        ],
        env=TF_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr}"
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one entry per framework
        report = next(r for r in report if r.get("check_type") == "terraform")
    return report, result.stderr


def _checks(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return report.get("results", {}).get(kind, [])


def _summary(checks: list[dict[str, Any]]) -> str:
    return "\n".join(f"{c['check_id']} {c['resource']}: {c.get('check_name')}" for c in checks)


@pytest.mark.slow
def test_checkov_passes_with_reasoned_skips() -> None:
    report, stderr = run_checkov(TF_DIR)
    failed = _checks(report, "failed_checks")
    assert not failed, f"checkov findings:\n{_summary(failed)}"
    assert "Failed to run check" not in stderr, f"a checkov check crashed:\n{stderr[-3000:]}"
    assert len(_checks(report, "passed_checks")) >= 15, "checkov scanned too little"
    skipped = _checks(report, "skipped_checks")
    assert {c["check_id"] for c in skipped} == EXPECTED_CHECKOV_SKIPS
    for check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 40, f"{check['check_id']} skip has no written reason"


@pytest.mark.slow
def test_checkov_fails_a_public_bucket_and_public_nodes(tmp_path: Path) -> None:
    copy = copy_module(tmp_path)
    replace_once(copy / "k8s.tf", "      nat        = false\n", "      nat        = true\n")
    text = (copy / "storage.tf").read_text()
    anchor = "  force_destroy         = false\n"
    (copy / "storage.tf").write_text(
        text.replace(anchor, anchor + '  acl                   = "public-read"\n', 1)
    )
    report, _ = run_checkov(copy)
    failed = {c["check_id"] for c in _checks(report, "failed_checks")}
    assert {"CKV_YC_6", "CKV_YC_17"} <= failed, f"checkov missed them; failed: {sorted(failed)}"


def _iter_tf_files() -> Iterator[Path]:
    yield from sorted(TF_DIR.glob("*.tf"))


def test_no_secrets_or_real_ids_committed() -> None:
    pattern = re.compile(r"(AQVN|YCAJ|YCM|t1\.)[A-Za-z0-9_\-]{20,}")
    for path in [*_iter_tf_files(), TFVARS_EXAMPLE, BACKEND_EXAMPLE]:
        assert not pattern.search(path.read_text()), f"{path.name} looks like it holds a credential"


@requires_hcl2
def test_service_node_ports_match_the_ports_terraform_opens(values: dict[str, Any]) -> None:
    """The public overlay's pinned NodePorts are the ones the security group opens: Triton's
    TLS gRPC LoadBalancer Service and the ingress-nginx controller's HTTPS port. The base
    Service is ClusterIP and pins none."""
    public = ROOT / "k8s" / "components" / "public-tls"
    service = (public / "service-grpc-public.yaml").read_text()
    grpc = re.findall(r"targetPort: grpc\n\s+nodePort: (\d+)", service)
    values_file = (public / "ingress-nginx-values.yaml").read_text()
    https = re.findall(r"nodePorts:\n\s+https: (\d+)", values_file)
    assert "nodePort" not in (ROOT / "k8s" / "base" / "service.yaml").read_text()
    assert len(grpc) == len(https) == 1
    opened = {k: int(v) for k, v in values["triton_node_ports"].items()}
    assert opened == {"https": int(https[0]), "grpc": int(grpc[0])}
