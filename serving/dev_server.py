"""`prottrans-serve` (DESIGN §7): not built yet — issue #6 builds it."""

import sys


def main() -> int:
    print("prottrans-serve: not built yet (issue #6)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
