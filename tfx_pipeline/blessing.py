"""When a candidate model is blessed. Pure functions over the probes' metrics.json and the training summary, so
the rules are tested without TFX.

By default a candidate must show, on the valid split (the test split is reported, never judged):
  * a validation context gain whose 95% interval lies above `min_context_gain` (0): it learned more than
    residue identity;
  * every gated probe metric not below the one-hot baseline by more than `onehot_tolerance`;
  * no metric below the last blessed model by more than `regression_tolerance` (paired, same proteins);
  * any absolute `floors` that are configured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.export.embedders import ONEHOT
from models.probes.probe import GATE_SET, HEADLINE, headline_results, paired_differences

METRIC_NAMES = tuple(name for names in HEADLINE.values() for name in names)


@dataclass(frozen=True)
class GateRules:
    min_context_gain: float | None = 0.0  # None: not gated
    onehot_tolerance: float = 0.0
    regression_tolerance: float = 0.02
    floors: dict[str, float] = field(default_factory=dict)
    gated_metrics: list[str] = field(default_factory=lambda: list(METRIC_NAMES))

    def __post_init__(self):
        check_metric_names(self.floors, "gate.floors")
        check_metric_names(dict.fromkeys(self.gated_metrics), "gate.gated_metrics")


@dataclass(frozen=True)
class Check:
    metric: str
    value: float
    bound: float
    kind: str  # "context_gain", "onehot", "regression" or "floor"

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value > self.bound if self.kind == "context_gain" else self.value >= self.bound

    def describe(self) -> str:
        what = {"context_gain": "the 95% interval's lower end must be above it",
                "onehot": "candidate minus one-hot, paired; one-hot tolerance",
                "regression": "candidate minus the last blessed model, paired; regression tolerance",
                "floor": "absolute floor"}[self.kind]
        if math.isnan(self.value):
            return f"{self.metric}: not measured (needs {what}) — FAILED"
        relation = (">" if self.kind == "context_gain" else ">=") if self.passed else "<" if self.value < self.bound \
            else "<="
        return f"{self.metric} {self.value:+.4f} {relation} {self.bound:+.4f} ({what}){'' if self.passed else ' — FAILED'}"


def check_metric_names(names: dict, what: str) -> None:
    unknown = set(names) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metrics in {what}: {sorted(unknown)}; known: {', '.join(METRIC_NAMES)}")


def headline_metrics(metrics: dict) -> dict[str, float]:
    """``{"ss/test/q3": …, "localization/valid/q10": …}`` from a probes metrics.json."""
    return {key: float(result[name]) for key, _, _, name, result in headline_results(metrics)}


def _gated(metric: str, rules: GateRules) -> bool:
    _, set_name, name = metric.split("/")
    return set_name == GATE_SET and name in rules.gated_metrics


def judge(candidate: dict, training_summary: dict | None, blessed: dict | None, rules: GateRules) -> list[Check]:
    """The checks a candidate must pass. `candidate` and `blessed` are probe metrics.json contents (the candidate's
    with its one-hot baseline), `training_summary` the candidate's training_summary.json (None if it has none)."""
    checks = []
    if rules.min_context_gain is not None:
        valid = (training_summary or {}).get("valid") or {}
        low = valid.get("context_gain_ci95", [float("nan")])[0]
        checks.append(Check("valid context gain (nats)", float(low), rules.min_context_gain, "context_gain"))
    headline = headline_metrics(candidate)
    missing = [name for name in rules.gated_metrics if not any(
        _gated(metric, rules) and metric.endswith("/" + name) for metric in headline)]
    if missing and (rules.floors or "baseline" in candidate):
        measured = sorted({metric.rsplit("/", 1)[1] for metric in headline})
        raise ValueError(f"the gate names {missing}, which the probes did not measure on {GATE_SET!r} (measured: "
                         f"{measured}); is the probe task narrower than the gated metrics?")
    if "baseline" in candidate:
        paired = candidate.get("paired", {}).get(ONEHOT) or paired_differences(candidate, candidate["baseline"])
        checks += [Check(f"{metric} − one-hot", result["difference"], -rules.onehot_tolerance, "onehot")
                   for metric, result in sorted(paired.items()) if _gated(metric, rules)]
    if blessed:
        paired = paired_differences(candidate, blessed, sets=(GATE_SET,))
        checks += [Check(f"{metric} − last blessed", result["difference"], -rules.regression_tolerance, "regression")
                   for metric, result in sorted(paired.items()) if _gated(metric, rules)]
    checks += [Check(metric, value, float(rules.floors[metric.rsplit("/", 1)[1]]), "floor")
               for metric, value in sorted(headline.items())
               if _gated(metric, rules) and metric.rsplit("/", 1)[1] in rules.floors]
    return checks
