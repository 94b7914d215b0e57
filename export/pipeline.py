"""The model pipeline end to end, and the gate on the committed artifacts."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.calibrate import calibration_report, fit_platt, write_calibration
from export.cards import write_model_card, write_policy_card
from export.config import (
    BUILD_DIR,
    CALIBRATION_JSON,
    CONTRACT_JSON,
    DATA_CSV,
    ENCODING_JSON,
    MODEL_CARD_JSON,
    POLICY_CARD_JSON,
    POLICY_JSON,
    POLICY_METRICS,
    PUBLISHED_ONNX,
    PUBLISHED_POLICY_ONNX,
    PUBLISHED_REASONS_ONNX,
    REASON_CODES_JSON,
    REFERENCE_FP32,
    REPORTS,
    ROOT,
    SPLIT_JSON,
    GateConfig,
    QuantizeConfig,
    TrainConfig,
    card_tolerance,
)
from export.data import Dataset, load_dataset, read_split, split_datasets
from export.encoding import Encoding, encode, fit_encoding
from export.graphs import compose
from export.onnx_export import export_onnx, torch_probabilities
from export.policy import write_policy_graph
from export.publish import (
    PUBLISHED_SOURCES,
    build_environment,
    copy_published_sources,
    package_versions,
    relative,
    sha256_file,
    sha256_gzip_content,
)
from export.quantize import quantize
from export.validate import GateReport, run_gate, score, session
from preprocess_ensemble.decisioning import Calibration, Policy, ReasonCatalogue
from preprocess_ensemble.features import FeatureContract
from preprocess_ensemble.scoring import InProcessScorer

MAX_EXPORT_DIFF = 1e-5
MONOTONE_FEATURES = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")
OPTIONS_REPORT = REPORTS / "model_options.json"  # python -m export options


class PipelineError(RuntimeError):
    """A pipeline step failed a check; the message says which and by how much."""


def load_parts() -> tuple[FeatureContract, dict[str, Dataset], dict]:
    """The contract, the committed split's datasets and the split itself."""
    contract = FeatureContract.from_json(CONTRACT_JSON)
    split = read_split(SPLIT_JSON)
    return contract, split_datasets(load_dataset(DATA_CSV, CONTRACT_JSON), split), split


def calibration_rows(train: Dataset, encoding: Encoding, config: QuantizeConfig) -> np.ndarray:
    """A fixed random sample of encoded training rows."""
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(train.ids), config.calibration_rows, replace=False))
    return encode(encoding, train.features[chosen])


def policy_codes(
    catalogue: ReasonCatalogue, names: tuple[str, ...], seen: set[str], strict: bool = True
) -> tuple[str, ...]:
    """Per contract feature: its reason code if the network sees it, else "" (never a reason).

    ``strict=False`` (options that are measured, never published): a seen feature without a
    code gets its name in brackets, so its reasons still count in the gate's checks.
    """
    pairs = list(zip(names, catalogue.codes, strict=True))
    missing = [n for n, c in pairs if n in seen and not c]
    if missing and strict:
        raise PipelineError(f"{relative(REASON_CODES_JSON)} has no reason code for {missing}")
    return tuple((c or f"[{n}]") if n in seen else "" for n, c in pairs)


def reference_values(encoding: Encoding) -> dict[str, float]:
    """The reference applicant (the training average) in request units, per seen feature."""
    values = {}
    for k, (transform, j) in enumerate(encoding.columns):
        if transform in ("status_-2", "status_-1"):
            continue
        m = float(encoding.mean[k])
        if transform == "signed_log1p":
            m = float(np.sign(m) * np.expm1(abs(m)))
        values[encoding.feature_names[j]] = round(m, 2)
    return values


def write_reference(encoding: Encoding, path: Path = REASON_CODES_JSON) -> None:
    """Refresh the catalogue's reference values from the fitted encoding."""
    spec = json.loads(path.read_text())
    spec["reference_applicant"]["values"] = reference_values(encoding)
    path.write_text(json.dumps(spec, indent=2) + "\n")


@dataclass(frozen=True)
class Built:
    """The files of one build: served models, FP32 reference, encoding and calibration."""

    model: Path
    reasons: Path
    policy: Path
    fp32: Path
    encoding: Path
    calibration: Path

    def scorer(self) -> InProcessScorer:
        """In-process scoring with these files."""
        return InProcessScorer(self.model, self.reasons, self.policy)


def gate(built: Built, parts: dict[str, Dataset], train_config: TrainConfig, config: GateConfig):
    """The model gate on the holdout for one build."""
    return run_gate(
        built.scorer(),
        built.fp32,
        parts["holdout"].features,
        parts["holdout"].target,
        config,
        unseen_features=tuple(train_config.exclude_from_model),
        monotone_features=MONOTONE_FEATURES,  # checked for every option, constrained or not
    )


def build_model(
    train_config: TrainConfig = TrainConfig(),
    quantize_config: QuantizeConfig = QuantizeConfig(),
    gate_config: GateConfig = GateConfig(),
    build_dir: Path = BUILD_DIR,
    publish: bool = True,
) -> tuple[GateReport, dict]:
    """Train, export, check ONNX parity, quantize, compose, gate and (if it passes) publish."""
    from export.train import train  # torch is a training-only dependency

    contract, parts, split = load_parts()
    encoding = fit_encoding(contract, train_config, parts["train"].features)
    result = train(parts["train"], parts["validation"], encoding, train_config)
    network_fp32 = export_onnx(result.model, encoding.width, build_dir / "network_fp32.onnx")
    x_holdout = encode(encoding, parts["holdout"].features)
    network_diff = float(
        np.abs(
            torch_probabilities(result.model, x_holdout)
            - session(network_fp32).run(None, {"input": x_holdout})[0][:, 0]
        ).max()
    )
    if network_diff > MAX_EXPORT_DIFF:
        raise PipelineError(
            f"ONNX FP32 differs from PyTorch by {network_diff:.3g} on the holdout "
            f"(limit {MAX_EXPORT_DIFF:g})"
        )
    network_int8 = quantize(
        network_fp32,
        build_dir / f"network_int8_{quantize_config.mode}.onnx",
        calibration_rows(parts["train"], encoding, quantize_config),
        quantize_config.mode,
    )
    model = compose(encoding, network_int8, build_dir / f"model_int8_{quantize_config.mode}.onnx")
    validation = parts["validation"]
    calibration = fit_platt(score(session(model), validation.features), validation.target)
    catalogue = ReasonCatalogue.from_json(REASON_CODES_JSON, contract.names)
    built = Built(
        model=model,
        reasons=compose(encoding, network_int8, build_dir / "model_reasons.onnx", reasons=True),
        policy=write_policy_graph(
            Policy.from_json(POLICY_JSON),
            calibration,
            policy_codes(catalogue, contract.names, set(encoding.seen_features), publish),
            catalogue.count,
            build_dir / "policy.onnx",
        ),
        fp32=compose(encoding, network_fp32, build_dir / "model_fp32.onnx"),
        encoding=encoding.to_json(build_dir / "encoding.json"),
        calibration=write_calibration(
            calibration, len(validation.ids), build_dir / "calibration.json"
        ),
    )
    report = gate(built, parts, train_config, gate_config)
    report.metrics["max_abs_diff_fp32_vs_torch"] = network_diff
    calibrated = {
        "method": "platt",
        "a": calibration.a,
        "b": calibration.b,
        "fitted_on": f"validation split ({len(validation.ids)} rows), INT8 probabilities",
        "holdout": calibration_report(
            calibration, score(session(model), parts["holdout"].features), parts["holdout"].target
        ),
    }
    card = {}
    if report.passed and publish:
        for source, target in (
            (built.model, PUBLISHED_ONNX),
            (built.reasons, PUBLISHED_REASONS_ONNX),
            (built.policy, PUBLISHED_POLICY_ONNX),
            (built.fp32, REFERENCE_FP32),
            (built.encoding, ENCODING_JSON),
            (built.calibration, CALIBRATION_JSON),
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        write_reference(encoding)
        published = [
            PUBLISHED_ONNX,
            PUBLISHED_REASONS_ONNX,
            REFERENCE_FP32,
            ENCODING_JSON,
            CALIBRATION_JSON,
            REASON_CODES_JSON,
            *copy_published_sources(),
        ]
        card = model_card(report, split, result, train_config, quantize_config, gate_config)
        card = write_model_card({**card, "calibration": calibrated}, published)
        write_policy_card(policy_card(report), [PUBLISHED_POLICY_ONNX, POLICY_JSON])
    return report, card


def policy_card(report: GateReport) -> dict:
    """What the published policy does on the holdout: decision rates and the fairness audit."""
    spec = json.loads(POLICY_JSON.read_text())
    return {
        "policy": f"{spec['id']}@{spec['version']}",
        "spec": spec,
        "calibration": json.loads(CALIBRATION_JSON.read_text()),
        "metrics": {k: report.metrics[k] for k in POLICY_METRICS},
        "score_bands": report.score_bands,
        "fairness_audit": report.audit,
        "gate": {"passed": report.passed, "failures": report.failures},
    }


def gate_committed(
    scorer: InProcessScorer, holdout: Dataset, config: GateConfig, unseen: tuple[str, ...]
) -> GateReport:
    """The gate for files scored against the committed FP32 reference (policy or validate)."""
    return run_gate(
        scorer,
        REFERENCE_FP32,
        holdout.features,
        holdout.target,
        config,
        unseen_features=unseen,
        monotone_features=MONOTONE_FEATURES,
    )


def build_policy(gate_config: GateConfig = GateConfig(), publish: bool = True) -> GateReport:
    """``make policy``: rebuild credit_policy from its JSON, gate it on the published network."""
    contract, parts, _ = load_parts()
    seen = {c["feature"] for c in json.loads(ENCODING_JSON.read_text())["columns"]}
    catalogue = ReasonCatalogue.from_json(REASON_CODES_JSON, contract.names)
    path = write_policy_graph(
        Policy.from_json(POLICY_JSON),
        Calibration.from_json(CALIBRATION_JSON),
        policy_codes(catalogue, contract.names, seen),
        catalogue.count,
        BUILD_DIR / "policy.onnx",
    )
    scorer = InProcessScorer(PUBLISHED_ONNX, PUBLISHED_REASONS_ONNX, path)
    unseen = tuple(n for n in contract.names if n not in seen)
    report = gate_committed(scorer, parts["holdout"], gate_config, unseen)
    if report.passed and publish:
        shutil.copyfile(path, PUBLISHED_POLICY_ONNX)
        write_policy_card(policy_card(report), [PUBLISHED_POLICY_ONNX, POLICY_JSON])
    return report


RELEASE_JSON = Path(__file__).resolve().parent / "release.json"


def model_card(report, split, result, train_config, quantize_config, gate_config) -> dict:
    """Everything a model-risk reviewer needs to trust, reproduce and sign the published model."""
    hidden = " -> ".join(str(h) for h in train_config.hidden)
    release = json.loads(RELEASE_JSON.read_text())
    seen = result.encoding.seen_features
    return {
        **{k: release[k] for k in ("model", "version", "owner", "status", "approval")},
        "date": release["changelog"][0]["date"],
        "intended_use": release["intended_use"],
        "default_definition": release["default_definition"],
        "architecture": (
            f"Mean of {train_config.ensemble_size} networks, seeds {train_config.seed}.."
            f"{train_config.seed + train_config.ensemble_size - 1}, on "
            f"{result.encoding.width} encoded inputs from {len(seen)} of the contract's features "
            f"({', '.join(seen)}), encoded inside the ONNX graph (export/encoding.py: signed "
            "log1p on amounts, months of delay plus two status indicators per repayment status, "
            "standardized with the training split). "
            + (
                f"Each network's logit is the sum of two MLP towers ({hidden} -> 1, ReLU, "
                f"dropout {train_config.dropout}): a free tower over every input except the six "
                "months-of-delay columns, and a constrained tower over all inputs whose weights "
                "on the delay columns and all of whose later weights are kept >= 0 after every "
                "training step. The sum is non-decreasing in each delay: a longer delay never "
                "lowers the PD. Sigmoid of the logit."
                if train_config.monotone_delays
                else f"Each network an MLP ({hidden} -> 1, ReLU, dropout {train_config.dropout}, "
                "sigmoid), without monotone constraint."
            )
        ),
        "features_not_seen": features_not_seen(train_config),
        "data": {
            "file": relative(DATA_CSV),
            "title": "Default of Credit Card Clients, UCI Machine Learning Repository",
            "citation": "Yeh, I-Cheng (2009)",
            "doi": "10.24432/C55S3H",
            "license": "CC BY 4.0",
            "rows": int(sum(len(split[k]) for k in ("train", "validation", "holdout"))),
            "defaults": int(load_dataset().target.sum()),
            "sha256_file": sha256_file(DATA_CSV),
            "sha256_csv": sha256_gzip_content(DATA_CSV),
            "limits": release["data_limits"],
        },
        "split": {
            "file": relative(SPLIT_JSON),
            "sha256": sha256_file(SPLIT_JSON),
            "seed": split["seed"],
            **{k: len(split[k]) for k in ("train", "validation", "holdout")},
        },
        "training": {
            **train_config.to_dict(),
            "validation_auc_ensemble": result.validation_auc,
            "members": [{k: v for k, v in m.items() if k != "history"} for m in result.members],
        },
        "quantization": {
            **asdict(quantize_config),
            "description": (
                f"static INT8 ({quantize_config.mode}), calibrated (MinMax) on "
                f"{quantize_config.calibration_rows} training rows, per-channel INT8 weights, "
                "UINT8 activations: scales are fixed, so a row's score never depends on its "
                "batch-mates. Weights are 7-bit (reduce_range): every adjacent pair along the "
                "reduction axis has |w0|+|w1| <= 128, so AVX2's saturating int16 sums are exact "
                "and the file scores the same on every x86-64 CPU."
            ),
        },
        "gate": {**asdict(gate_config), "passed": report.passed},
        "metrics": report.metrics,
        "reliability": report.reliability,
        "score_bands": report.score_bands,
        "decision_policy": json.loads(POLICY_JSON.read_text()),
        "fairness_audit": report.audit,
        "reason_codes": json.loads(REASON_CODES_JSON.read_text())["reference_applicant"],
        "limitations": [
            *release["data_limits"][:2],
            "EDUCATION is a model input; it is not a prohibited basis under ECOA but is audited "
            "(adverse impact ratios) because it can proxy for protected characteristics.",
            "The approval rates and adverse impact ratios depend on the policy cut-offs: "
            "make policy re-runs the audit for every policy version (credit_policy/policy_card).",
        ],
        "changelog": release["changelog"],
        "packages": package_versions(),
        "build_environment": build_environment(),
    }


def features_not_seen(train_config: TrainConfig) -> dict:
    """The explicit choice about SEX, MARRIAGE and AGE, with the measured AUC of each option."""
    section: dict = {
        "excluded_from_model": list(train_config.exclude_from_model),
        "choice": (
            "SEX and MARRIAGE are prohibited bases under ECOA (15 U.S.C. 1691) and are not model "
            "inputs. AGE is left out too: Regulation B allows age only in an empirically derived, "
            "demonstrably and statistically sound system and forbids giving an applicant aged 62 "
            "or more a negative factor (12 CFR 1002.2(v)); without AGE the network cannot do "
            "that, and the gate proves it on the served file (no PD changes when SEX, MARRIAGE "
            "or AGE move across their domain; no applicant aged 62+ scores worse than at any "
            "younger age). Leaving the three out costs nothing measurable; the monotone "
            "constraint on payment delays costs about 0.004 AUC (options below), which is why "
            "the gate's AUC floor is 0.775 rather than 0.78. All three stay in the request "
            "contract for validation, drift and the fairness audit, and have no reason code."
        ),
    }
    if OPTIONS_REPORT.exists():
        section["options"] = json.loads(OPTIONS_REPORT.read_text())["options"]
    return section


MODEL_OPTIONS = (
    ("all 23 features, free MLP (release 1.0.0's inputs)", (), False),
    ("without SEX, MARRIAGE; free MLP", ("SEX", "MARRIAGE"), False),
    ("without SEX, MARRIAGE, AGE; free MLP", ("SEX", "MARRIAGE", "AGE"), False),
    ("without SEX, MARRIAGE; monotone in delays (AGE kept)", ("SEX", "MARRIAGE"), True),
    ("without SEX, MARRIAGE, AGE; monotone (published)", ("SEX", "MARRIAGE", "AGE"), True),
)


def measure_options(build_dir: Path = BUILD_DIR / "options") -> dict:
    """Train every option of MODEL_OPTIONS (no publishing) and write reports/model_options.json."""
    options = []
    for label, excluded, monotone in MODEL_OPTIONS:
        config = TrainConfig(exclude_from_model=excluded, monotone_delays=monotone)
        report, _ = build_model(config, build_dir=build_dir, publish=False)
        m = report.metrics
        options.append(
            {
                "option": label,
                "excluded_from_model": list(excluded),
                "monotone_delays": monotone,
                **{k: m[k] for k in ("auc_holdout_int8", "auc_holdout_fp32", "approval_rate")},
                "min_adverse_impact_ratio": m["min_adverse_impact_ratio"],
                "monotone_violations_holdout": m["monotone_violations_holdout"],
                "elderly_violations": m["elderly_violations"],
                "gate_failures": report.failures,
            }
        )
    payload = {"command": "python -m export options", "options": options}
    OPTIONS_REPORT.parent.mkdir(parents=True, exist_ok=True)
    OPTIONS_REPORT.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def validate_published(gate_config: GateConfig = GateConfig()) -> GateReport:
    """Run the gate on the committed artifacts and check both cards against them."""
    contract, parts, _ = load_parts()
    card = json.loads(MODEL_CARD_JSON.read_text())
    policy = json.loads(POLICY_CARD_JSON.read_text())
    unseen = tuple(card["training"]["exclude_from_model"])
    report = gate_committed(InProcessScorer.published(), parts["holdout"], gate_config, unseen)
    for name, expected in {**card["artifacts"], **policy["artifacts"]}.items():
        actual = sha256_file(ROOT / name)
        if actual != expected:
            report.failures.append(f"{name}: sha256 {actual} differs from the card's {expected}")
    for name, value in report.metrics.items():
        source, figures = ("model card", card)
        if name in POLICY_METRICS:
            source, figures = ("policy card", policy)
        limit = card_tolerance(name)
        if name in figures["metrics"] and abs(figures["metrics"][name] - value) > limit:
            report.failures.append(
                f"metric {name}: measured {value:.6g}, {source} says "
                f"{figures['metrics'][name]:.6g} (tolerance {limit:g})"
            )
    for copy in [target for _, target in PUBLISHED_SOURCES]:
        if relative(copy) not in card["artifacts"]:
            report.failures.append(f"{relative(copy)} is missing from the model card")
    return report
