"""`agentalign export-labels` and `import-labels`: their arguments. They take no settings: a
label folder and a file are all they need (the stage is `train.label_io`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agentalign.command import Command

LABEL_DIR = "a label folder: labels.sqlite and the corpora its labels refer to"


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write the labels of LABEL_DIR/labels.sqlite to a JSONL file, one label a line, oldest "
        "first: the pair's split and trajectories (corpus folder and episode), chosen and "
        "rejected (null unless the answer is first or second), answer, annotator, source, "
        "target, rubric, the side the first trajectory was drawn on, and the time.")
    parser.add_argument("labels", type=Path, metavar="LABEL_DIR", help=LABEL_DIR)
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl",
                        help="the JSONL file to write (replaced atomically)")
    parser.add_argument("--target", metavar="NAME", help="only this target's labels (default: "
                        "every target)")


def export_request(args: argparse.Namespace) -> tuple[None, dict[str, Any]]:
    return None, {"labels": args.labels, "out": args.out, "target": args.target}


def import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Add the labels of a JSONL file (as export-labels writes it) to LABEL_DIR/labels.sqlite "
        "(made if missing). Every line is checked first (each corpus it names must be a folder "
        "inside LABEL_DIR that holds the episode): the first bad line is an error and nothing is "
        "written. Labels the store already holds (same pair, answer, annotator, target and "
        "time) are not added again, so importing a file twice adds nothing.")
    parser.add_argument("labels", type=Path, metavar="LABEL_DIR", help=LABEL_DIR)
    parser.add_argument("file", type=Path, metavar="FILE.jsonl", help="the labels to import")


def import_request(args: argparse.Namespace) -> tuple[None, dict[str, Any]]:
    return None, {"labels": args.labels, "file": args.file}


EXPORT = Command("export-labels", "write a label store's labels to a JSONL file",
                 export_arguments, export_request, "agentalign.train.label_io:export_labels",
                 "agentalign.train.label_io:export_summary", inputs=("labels",),
                 outputs=("out",), settings=False)
IMPORT = Command("import-labels", "add the labels of a JSONL file to a label store",
                 import_arguments, import_request, "agentalign.train.label_io:import_labels",
                 "agentalign.train.label_io:import_summary", inputs=("file",),
                 outputs=("labels",), settings=False)
