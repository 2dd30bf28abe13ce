"""`camclassd dataset DIR`: counts per class and what is wrong with a dataset folder."""

from __future__ import annotations

import argparse
import json

from camclassd.errors import EXIT_OK
from camclassd.training import dataset


def main(args: argparse.Namespace) -> int:
    data = dataset.scan(args.dataset)
    result = dataset.check(data)
    if args.json:
        print(
            json.dumps(
                {
                    "dataset": str(args.dataset),
                    "classes": dict(result.counts),
                    "unreadable": [str(p) for p in result.unreadable],
                    "not_images": [str(p) for p in result.other_files],
                    "duplicates": [[str(p) for p in group] for group in result.duplicates],
                    "warnings": list(result.warnings),
                }
            )
        )
    else:
        print(dataset.format_check(args.dataset, result))
    return EXIT_OK
