"""Command line of the MIAS data layer: ``python -m mammo_ray.data {fetch,summary}``.

``fetch`` downloads the official archive into a cache folder and checks that it parses;
``summary`` prints what a MIAS directory or archive holds, as plain-text tables.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mammo_ray.cli import add_data_argument, resolve_data, run_cli, text_table
from mammo_ray.data.fetch import MIAS_IMAGE_COUNT, MIAS_URL, default_dest, fetch_mias
from mammo_ray.data.mias import MiasDataset, load_mias
from mammo_ray.data.mias_info import CLASS_CODES, LABEL_SCHEMES, LABELS, SEVERITIES, TISSUES
from mammo_ray.files import check_writable_dir

__all__ = ["main", "summary_text"]


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"


def summary_text(dataset: MiasDataset) -> str:
    """Plain-text summary of a dataset: sizes, then films per label, tissue, severity, class."""
    records = dataset.records
    total = len(records)
    labels = Counter(r.label for r in records)
    tissues = Counter(r.tissue for r in records)
    severities = Counter(r.severity for r in records)
    classes = Counter(code for r in records for code in set(r.classes))
    overview = [
        ("data", str(dataset.path)),
        ("scheme", dataset.scheme),
        ("fingerprint", dataset.fingerprint),
        ("images", total),
        ("patients", len({r.patient_id for r in records})),
        ("excluded", len(dataset.excluded)),
    ]
    sections = [
        text_table(("", ""), overview, "ll")[1:],
        text_table(
            ("label", "images", "share"),
            [(label, labels[label], _share(labels[label], total)) for label in LABELS],
            "lrr",
        ),
        text_table(
            ("tissue", "images"),
            [(f"{code} {name}", tissues[code]) for code, name in TISSUES.items()],
            "lr",
        ),
        text_table(
            ("severity", "images"),
            [(f"{code} {name}", severities[code]) for code, name in SEVERITIES.items()]
            + [("- none (normal)", severities[None])],
            "lr",
        ),
        text_table(
            ("class", "images"),
            [(f"{code} {name}", classes[code]) for code, name in CLASS_CODES.items()],
            "lr",
        ),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections)


def _summary(args: argparse.Namespace) -> int:
    print(summary_text(load_mias(resolve_data(args.data), scheme=args.scheme)))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    dest = args.dest if args.dest is not None else default_dest()
    check_writable_dir(dest, "--dest")
    result = fetch_mias(dest, url=args.url, force=args.force)
    records = result.dataset.records
    labels = Counter(r.label for r in records)
    counts = ", ".join(f"{label} {labels[label]}" for label in LABELS)
    patients = len({r.patient_id for r in records})
    if not result.downloaded:
        print(f"already downloaded (use --force to download again): {result.path}")
    print(f"found {len(records)} images of {patients} patients ({counts})")
    found = len(records) + len(result.dataset.excluded)
    if found != MIAS_IMAGE_COUNT:
        print(
            f"warning: the official archive holds {MIAS_IMAGE_COUNT} images, this one {found}",
            file=sys.stderr,
        )
    print(result.path)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.data",
        description="The MIAS MiniMammographic Database: download it, or summarise a copy.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "fetch",
        help="download all-mias.tar.gz and check that it parses",
        description=(
            "Download the official MIAS archive (all-mias.tar.gz) to DEST, check that it "
            "parses, and print its path. An archive already there that parses is kept."
        ),
    )
    fetch.add_argument(
        "--dest",
        type=Path,
        help="folder for the archive (default: $MAMMO_RAY_HOME or ~/.cache/mammo_ray)",
    )
    fetch.add_argument("--url", default=MIAS_URL, help=f"where to download from ({MIAS_URL})")
    fetch.add_argument("--force", action="store_true", help="download even if already there")
    fetch.set_defaults(run=_fetch)
    summary = commands.add_parser(
        "summary",
        help="count images, patients, labels, tissues and severities of a MIAS copy",
        description=(
            "Print what a MIAS directory or archive (.tar.gz, .tgz, .tar, .zip) holds: images "
            "and patients, then images per label, background tissue, severity and class."
        ),
    )
    add_data_argument(summary)
    summary.add_argument(
        "--scheme", choices=list(LABEL_SCHEMES), default="paper", help="label scheme (paper)"
    )
    summary.set_defaults(run=_summary)
    return parser


def _print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a warning as one line, ``warning: <message>``, on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; warnings are printed as ``warning: <message>``."""
    args = _build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning
        return args.run(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
