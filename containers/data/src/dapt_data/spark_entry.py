"""The EMR Serverless job's entry point (uploaded as `code/dapt-data/spark_entry.py`, run by
`spark-submit` in the packed environment): `dapt-data batch --engine spark`, so the job reads
the same environment as the Batch job (PIPELINE_CONFIG, OUTPUT_URI, STEPS, DAPT_WRITE_PREFIX)
and its corpus-sized steps run on the job's Spark session.

    spark-submit spark_entry.py [batch]        # exit codes as dapt-data's: 0, 1 a step, 2 config
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dapt_data.cli import main as dapt_data


def main(argv: Sequence[str] | None = None) -> int:
    """`dapt-data batch --engine spark` (the only command a job runs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["batch"]):
        print(f"spark_entry: expected no arguments or 'batch', got {args}", file=sys.stderr)
        return 2
    return dapt_data(["batch", "--engine", "spark"])


if __name__ == "__main__":
    sys.exit(main())
