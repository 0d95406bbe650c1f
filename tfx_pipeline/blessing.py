"""When a candidate model is blessed: its probe metrics against absolute floors and against the last blessed
model. Pure functions, so the rules are tested without TFX."""

from __future__ import annotations

from dataclasses import dataclass

# The headline metric of each probe family, as `prottrans-probe`'s metrics.json names them.
HEADLINE = {"ss": ("q3", "q8"), "localization": ("q10", "q2")}


@dataclass(frozen=True)
class Check:
    metric: str  # "<family>/<set>/<metric>", e.g. "ss/test/q3"
    value: float
    bound: float
    kind: str  # "floor" or "regression"

    @property
    def passed(self) -> bool:
        return self.value >= self.bound

    def describe(self) -> str:
        what = "floor" if self.kind == "floor" else "last blessed model minus tolerance"
        return f"{self.metric} {self.value:.4f} {'>=' if self.passed else '<'} {self.bound:.4f} ({what})"


def headline_metrics(metrics: dict) -> dict[str, float]:
    """``{"ss/test/q3": …, "localization/test/q10": …}`` from a probes metrics.json."""
    found = {}
    for family, names in HEADLINE.items():
        for set_name, result in metrics.get(family, {}).items():
            for name in names:
                found[f"{family}/{set_name}/{name}"] = float(result[name])
    return found


def check_floor_names(floors: dict[str, float]) -> None:
    unknown = set(floors) - {name for names in HEADLINE.values() for name in names}
    if unknown:
        raise ValueError(f"unknown metrics in thresholds: {sorted(unknown)}; known: q3, q8, q10, q2")


def judge(candidate: dict[str, float], floors: dict[str, float], baseline: dict[str, float] | None,
          tolerance: float) -> list[Check]:
    """The checks a candidate must pass. `floors` are by metric name (``q3``), applying to every set with that
    metric; `baseline` (the last blessed model's headline metrics) bounds each metric both have from below by
    its value minus `tolerance`."""
    check_floor_names(floors)
    checks = []
    for metric, value in sorted(candidate.items()):
        name = metric.rsplit("/", 1)[1]
        if name in floors:
            checks.append(Check(metric, value, float(floors[name]), "floor"))
        if baseline and metric in baseline:
            checks.append(Check(metric, value, baseline[metric] - tolerance, "regression"))
    missing = set(floors) - {metric.rsplit("/", 1)[1] for metric in candidate}
    if missing:
        raise ValueError(f"thresholds name {sorted(missing)}, which the probes did not measure "
                         "(is the probe task narrower than the thresholds?)")
    return checks
