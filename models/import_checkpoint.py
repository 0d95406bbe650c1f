"""`prottrans-import` (DESIGN §7): not built yet — issue #3 builds it."""

import sys


def main() -> int:
    print("prottrans-import: not built yet (issue #3)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
