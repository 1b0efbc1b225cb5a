"""The ``import`` and ``data`` commands of ``python -m training``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import resource
import sys
import time
from pathlib import Path

from training import data, importer, provenance

log = logging.getLogger("training")
EX_TEMPFAIL = 75


def run_command(args: argparse.Namespace, db: Path) -> int:
    """Exit status: 0 done (or already imported), 1 nothing imported, 75 the database stayed locked."""
    try:
        if args.command == "data":
            print(provenance.format_imports(db, *provenance.list_imports(db)))
            return 0
        limits = importer.Limits.from_env()
        if args.max_refused is not None:
            if not 0 <= args.max_refused <= 1:
                raise importer.ImportFailed(
                    f"--max-refused must be a share from 0 to 1 (0.1: 10%), got {args.max_refused}"
                )
            limits = dataclasses.replace(limits, max_refused=args.max_refused)
        if args.busy_timeout is not None:
            if not 0 <= args.busy_timeout <= 86400:
                raise importer.ImportFailed(f"--busy-timeout must be seconds from 0 to 86400, got {args.busy_timeout}")
            limits = dataclasses.replace(limits, busy_timeout=args.busy_timeout)
        started = time.perf_counter()
        summary = importer.run(
            db,
            args.file,
            limits=limits,
            accept_partial=args.accept_partial,
            max_price=data.max_price_from_env(),
            rejects=args.rejects,
        )
        print_summary(summary, time.perf_counter() - started, peak_rss_mb())
    except importer.Busy as exc:
        log.error("error: %s", exc)
        return EX_TEMPFAIL
    except (data.DataError, OSError) as exc:
        log.error("error: %s", exc)
        return 1
    return 0


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def print_summary(summary: importer.Summary, elapsed: float, peak_rss_mb: float) -> None:
    """The import's outcome on stdout."""
    name = summary.source.name
    if summary.already is not None:
        a = summary.already
        print(
            f"{name}: already imported (import {a.id}, {a.rows_added:,} rows, {a.imported_at}, "
            f"sha256 {a.sha256[:12]}): 0 rows added"
        )
        return
    share = summary.refused_total / summary.rows_read if summary.rows_read else 0.0
    last = (summary.first_id or 0) + summary.added - 1
    ids = f", keys {summary.first_id}-{last}" if summary.added else ""
    print(
        f"{name}: {summary.rows_read:,} rows read, {summary.added:,} added (import {summary.import_id}{ids}), "
        f"{summary.refused_total:,} refused ({share:.1%})"
    )
    for reason, count in sorted(summary.refused.items(), key=lambda kv: -kv[1]):
        print(f"  refused: {reason}: {count:,}")
    print(f"  rejects file: {summary.rejects}")
    if summary.ignored:
        print(f"  columns ignored: {', '.join(summary.ignored)[:300]}")
    if summary.migrated:
        print(f"  database schema: added {', '.join(summary.migrated)} (existing rows unchanged)")
    print(f"  took {elapsed:.1f} s, peak RSS {peak_rss_mb:.0f} MB")
