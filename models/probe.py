"""`prottrans-probe` (DESIGN §7): not built yet — issue #4 builds it."""

import sys


def main() -> int:
    print("prottrans-probe: not built yet (issue #4)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
