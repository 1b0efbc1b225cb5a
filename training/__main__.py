"""Command line: ``python -m training [train|versions|promote|export-triton|import|data]``.

    python -m training                       # train, gate, promote or reject
    python -m training --db D --settings S --registry R
    python -m training versions              # list registry versions, mark the current one
    python -m training promote --version N   # point modelsettings.json at version N
    python -m training export-triton --version N OUT   # a Triton model repository from version N
    python -m training import FILE [--db D]  # add a CSV file's rows to the database (docs/import.md)
    python -m training data [--db D]         # the database's rows and every import

Environment: DIAMOND_DB, MODEL_SETTINGS, MODEL_REGISTRY (paths, as the options), MAX_PRICE
(default 1000000): rows priced above it in USD are removed by cleaning, like non-finite ones, and
MAX_TRAIN_ROWS (default 2000000): a table with more rows is refused before they are read.
An import reads IMPORT_MAX_REFUSED, IMPORT_BUSY_TIMEOUT and IMPORT_MAX_LINE (docs/import.md).

Exit status: 0 when a run completes (candidate promoted or rejected), 1 on an
error (nothing changed), 75 when ``--no-wait`` finds another run holding the lock (or an import
finds the database locked past IMPORT_BUSY_TIMEOUT).
A training run, completed or failed, ends by printing ``report: <path>``: its HTML report.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from inference.logs import configure_logging
from inference.modelsettings import ModelFileError
from training.paths import TrainingPaths

log = logging.getLogger("training")
COMMANDS = ("train", "versions", "promote", "export-triton", "import", "data")
EX_TEMPFAIL = 75


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line; with no command (or options alone) it is ``train``."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=Path, help="SQLite database (default: $DIAMOND_DB or the repo's diamond.db)")
    common.add_argument("--settings", type=Path, help="modelsettings.json (default: $MODEL_SETTINGS or the repo's)")
    common.add_argument(
        "--registry", type=Path, help="registry directory (default: $MODEL_REGISTRY or model_registry/)"
    )
    train = sub.add_parser("train", parents=[common], help="fit a candidate and run the MAE gate")
    train.add_argument("--no-wait", action="store_true", help="exit 75 instead of waiting for a concurrent run")
    sub.add_parser("versions", parents=[common], help="list the registry's versions")
    promote = sub.add_parser("promote", parents=[common], help="point modelsettings.json at an existing version")
    promote.add_argument("--version", type=int, required=True)
    triton = sub.add_parser("export-triton", parents=[common], help="write a Triton model repository")
    triton.add_argument("--version", type=int, required=True, help="the registry version to export")
    triton.add_argument("out", type=Path, help="the model repository directory (created if missing)")
    load = sub.add_parser("import", parents=[common], help="add the rows of a CSV file to the database")
    load.add_argument("file", type=Path, help="CSV with a header: carat, cut, color, clarity, price (any case)")
    load.add_argument("--accept-partial", action="store_true", help="import the good rows however many are refused")
    load.add_argument("--max-refused", type=float, help="share of refused rows that refuses the file (default 0.1)")
    load.add_argument("--busy-timeout", type=float, help="seconds to wait for another writer (default 10)")
    load.add_argument("--rejects", type=Path, help="where refused rows go (default: FILE.rejects.csv)")
    sub.add_parser("data", parents=[common], help="the database's rows and every import")
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module's docstring)."""
    args = parse(sys.argv[1:] if argv is None else argv)
    configure_logging(fmt="%(message)s")
    paths = TrainingPaths.from_env(db=args.db, settings=args.settings, registry=args.registry)

    if args.command in ("import", "data"):  # without the fitting libraries: an import streams in little memory
        from training.imports_cli import run_command

        return run_command(args, paths.db)

    # Imported here so that `--help` and argument errors stay instant.
    from training import data, train, triton, versions
    from training.registry import Registry, RegistryBusy

    registry = Registry(paths.settings, paths.registry)
    try:
        if args.command == "versions":
            print(versions.format_versions(versions.list_versions(registry)))
        elif args.command == "promote":
            versions.promote(registry, args.version)
        elif args.command == "export-triton":
            triton.export(registry, args.version, args.out)
        else:
            from training.progress import Progress

            with Progress() as progress:  # on a terminal, a live line with the stage and an estimate
                outcome = train.run(
                    paths,
                    wait=not args.no_wait,
                    max_price=data.max_price_from_env(),
                    max_rows=data.max_rows_from_env(),
                    progress=progress,
                )
            print(f"report: {outcome.report}", flush=True)
    except RegistryBusy as exc:
        log.error("error: %s", exc)
        return EX_TEMPFAIL
    except (data.DataError, train.TrainingError, ModelFileError, OSError) as exc:
        log.error("error: %s", exc)
        if args.command == "train":
            from training.report import write_failure

            print(f"report: {write_failure(paths, exc) or 'none (see above)'}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
