"""Command line of the drift job.

::

    python -m drift report [--current split:holdout|FILE.csv|CAPTURE_DIR]
                           [--triton-url HOST:PORT] [--protocol http|grpc] [--out-dir reports]
    python -m drift scenario NAME --out FILE.csv      # NAME: holdout, limit_raise, ...
    python -m drift scenarios [--out-dir DIR]         # every scenario: CSV + report + verdict

``report`` exits 0 (no drift), 1 (drift: retrain recommended, naming the features) or 2 (bad
input or an error, one line on stderr). ``scenarios`` exits 0 when every scenario gets the
verdict it was built for, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from drift.config import CONFIG_TOML, DriftConfig
from drift.report import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_OK,
    REPORTS_DIR,
    DriftInputError,
    load_splits,
    run_report,
)
from drift.scenarios import EXPECTED, SCENARIOS, make_scenario, write_scenario_csv
from export.config import CONTRACT_JSON
from preprocess_ensemble.features import FeatureContract


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m drift``."""
    parser = argparse.ArgumentParser(prog="python -m drift", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="compare current rows with the training reference")
    report.add_argument(
        "--current",
        default="split:holdout",
        help="split:NAME, a CSV with the contract's columns, or a capture directory",
    )
    _add_common(report)
    scenario = sub.add_parser("scenario", help="write one scenario's rows as a CSV")
    scenario.add_argument("name", choices=sorted(SCENARIOS))
    scenario.add_argument("--out", required=True, type=Path, help="CSV file to write")
    every = sub.add_parser("scenarios", help="run the report on every scenario, check verdicts")
    _add_common(every)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--triton-url", help="score current rows via Triton at HOST:PORT")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--out-dir", type=Path, default=REPORTS_DIR, help="default: reports/")
    parser.add_argument("--config", type=Path, default=CONFIG_TOML, help="thresholds (TOML)")


def format_table(summary: dict) -> str:
    """Per-feature verdicts as a Markdown table, the predicted probability last."""
    lines = [
        "| feature | test | score | threshold | PSI | PSI band | drifted |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = {**summary["features"], "probability (predicted)": summary["prediction_drift"]}
    for name, f in rows.items():
        score = f["statistic"] if f["statistic"] is not None else f["p_value"]
        lines.append(
            f"| {name} | {f['test']} | {score:.4f} | {f['threshold']:g} | {f['psi']:.4f} "
            f"| {f['psi_band']} | {'**yes**' if f['drifted'] else 'no'} |"
        )
    return "\n".join(lines)


def _report(args: argparse.Namespace, current: str, out_dir: Path) -> dict:
    return run_report(
        current,
        triton_url=args.triton_url,
        protocol=args.protocol,
        out_dir=out_dir,
        config=DriftConfig.load(args.config),
    )


def _cmd_report(args: argparse.Namespace) -> int:
    summary = _report(args, args.current, args.out_dir)
    print(format_table(summary))
    print(f"\n{summary['message']}")
    print(f"wrote {summary['report_html']} and {summary['summary_json']}")
    return EXIT_DRIFT if summary["drift_detected"] else EXIT_OK


def _cmd_scenario(args: argparse.Namespace) -> int:
    contract = FeatureContract.from_json(CONTRACT_JSON)
    data = make_scenario(args.name, contract, load_splits())
    path = write_scenario_csv(data, contract, args.out)
    print(f"wrote {len(data.ids)} rows of scenario {args.name!r} to {path}")
    return EXIT_OK


def _cmd_scenarios(args: argparse.Namespace) -> int:
    contract = FeatureContract.from_json(CONTRACT_JSON)
    splits = load_splits()
    results, ok = {}, True
    for name in SCENARIOS:
        folder = args.out_dir / "drift_scenarios" / name
        csv = write_scenario_csv(
            make_scenario(name, contract, splits), contract, folder / "current.csv"
        )
        summary = _report(args, str(csv), folder)
        expected = set(EXPECTED[name])
        good = summary["drift_detected"] == bool(expected) and expected <= set(
            summary["drifted_features"]
        )
        ok &= good
        exit_code = EXIT_DRIFT if summary["drift_detected"] else EXIT_OK
        results[name] = {"exit": exit_code, "as_expected": good, "message": summary["message"]}
        print(f"\n## scenario {name}: exit {exit_code} ({'as expected' if good else 'UNEXPECTED'})")
        print(format_table(summary))
        print(f"\n{summary['message']}")
    (args.out_dir / "drift_scenarios" / "verdicts.json").write_text(json.dumps(results, indent=2))
    print(f"\nverdicts: {args.out_dir / 'drift_scenarios' / 'verdicts.json'}")
    return EXIT_OK if ok else EXIT_DRIFT


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit code (0 no drift, 1 drift, 2 bad input or error)."""
    args = build_parser().parse_args(argv)
    commands = {"report": _cmd_report, "scenario": _cmd_scenario, "scenarios": _cmd_scenarios}
    try:
        return commands[args.command](args)
    except (DriftInputError, ValueError, OSError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_ERROR
