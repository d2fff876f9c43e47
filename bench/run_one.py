"""Run one benchmark module and write its result as JSON (used by bench/__main__)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def main() -> int:
    name, out = sys.argv[1], Path(sys.argv[2])
    smoke = "--smoke" in sys.argv[3:]
    module = importlib.import_module(f"bench.bench_{name}")
    result = module.run(smoke=smoke)
    out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
