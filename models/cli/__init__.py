"""The `models` package's commands: `prottrans-train`, `prottrans-import`, `prottrans-probe`."""
