"""Command line of the model pipeline: ``python -m export {split,model,validate,bench,...}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from export.config import (
    BUILD_DIR,
    DATA_CSV,
    SPLIT_JSON,
    QuantizeConfig,
    TrainConfig,
)
from export.quantize import MODES


def main(argv: list[str] | None = None) -> int:
    """Parse options and run one pipeline command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="write (or --check) the stratified split row IDs")
    split.add_argument("--check", action="store_true", help="fail if data/split.json is stale")
    model = commands.add_parser("model", help="train -> ONNX -> INT8 -> gate -> publish")
    model.add_argument("--quantization", choices=MODES, default=QuantizeConfig().mode)
    model.add_argument("--no-publish", action="store_true", help="run the gate, publish nothing")
    model.add_argument(
        "--build-dir", type=Path, default=BUILD_DIR, help="where intermediate files go (build/)"
    )
    model.add_argument(
        "--metrics-json", type=Path, help="also write the gate's metrics and verdict to this file"
    )
    commands.add_parser(
        "options",
        help="train every input/constraint option (no publishing); reports/model_options.json",
    )
    commands.add_parser("policy", help="rebuild credit_policy from its JSON, gate and publish it")
    commands.add_parser("validate", help="run the validation gate on the committed artifacts")
    commands.add_parser(
        "publish-sources",
        help="copy the contract, features.py and capture.py into model_repository/ and "
        "refresh the model card's hashes (no retraining)",
    )
    bench = commands.add_parser("bench", help="PyTorch vs ONNX Runtime FP32/INT8 latency")
    bench.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration")
    check = commands.add_parser("check-csv", help="check a CSV/XLS file against the contract")
    check.add_argument("path", nargs="?", default=str(DATA_CSV))
    args = parser.parse_args(argv)

    from export.data import DataError

    try:
        if args.command == "split":
            return _split(args.check)
        if args.command == "model":
            return _model(
                args.quantization,
                publish=not args.no_publish,
                build_dir=args.build_dir,
                metrics_json=args.metrics_json,
            )
        if args.command == "options":
            from export.pipeline import OPTIONS_REPORT, measure_options

            for option in measure_options()["options"]:
                print(f"{option['auc_holdout_int8']:.4f}  {option['option']}")
            print(f"wrote {OPTIONS_REPORT}")
            return 0
        if args.command == "policy":
            from export.pipeline import build_policy
            from export.validate import format_report

            report = build_policy()
            print(format_report(report))
            return 0 if report.passed else 1
        if args.command == "validate":
            from export.pipeline import validate_published
            from export.validate import format_report

            report = validate_published()
            print(format_report(report))
            return 0 if report.passed else 1
        if args.command == "publish-sources":
            from export.publish import publish_sources

            print("refreshed:\n  " + "\n  ".join(publish_sources()["artifacts"]))
            return 0
        if args.command == "bench":
            from export.bench import run_bench

            print(run_bench(repeats=args.repeats))
            return 0
        if args.command == "check-csv":
            from export.data import load_dataset

            data = load_dataset(args.path, require_target=False)
            print(f"{args.path}: {len(data.ids)} rows satisfy the feature contract")
            return 0
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 2


def _split(check: bool) -> int:
    from export.data import load_dataset, make_split, read_split, write_split

    split = make_split(load_dataset())
    if check:
        if read_split(SPLIT_JSON) != split:
            print(f"{SPLIT_JSON} does not match the split the code makes", file=sys.stderr)
            return 1
        print(f"{SPLIT_JSON} is current")
        return 0
    write_split(split)
    print(
        f"wrote {SPLIT_JSON}: "
        + ", ".join(f"{k} {len(split[k])}" for k in ("train", "validation", "holdout"))
    )
    return 0


def _model(
    mode: str,
    publish: bool,
    build_dir: Path = BUILD_DIR,
    metrics_json: Path | None = None,
) -> int:
    from export.pipeline import PipelineError, build_model
    from export.validate import format_report

    try:
        report, card = build_model(
            train_config=TrainConfig(),
            quantize_config=QuantizeConfig(mode=mode),
            publish=publish,
            build_dir=build_dir,
        )
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    if metrics_json:
        verdict = {"passed": report.passed, "failures": report.failures}
        metrics_json.write_text(json.dumps({**verdict, "metrics": report.metrics}, indent=2))
    if card:
        print("published:\n  " + "\n  ".join(card["artifacts"]))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
