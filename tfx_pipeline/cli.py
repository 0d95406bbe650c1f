"""`prottrans-pipeline` (DESIGN §7): not built yet — issue #5 builds it."""

import sys


def main() -> int:
    print("prottrans-pipeline: not built yet (issue #5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
