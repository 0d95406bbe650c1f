"""When a candidate model is blessed. Pure functions over the probes' metrics.json and the training summary, so
the rules are tested without TFX.

By default a candidate must show, on the valid split (the test split is reported, never judged):
  * a validation context gain whose 95% interval lies above `min_context_gain` (0): it learned more than
    residue identity;
  * on every gated probe metric, a paired 95% interval (candidate minus one-hot, same proteins) that is not
    wholly below `-onehot_margin`: only a candidate confidently worse than one-hot by more than the margin fails;
  * the same against the last blessed model, with `regression_margin`;
  * any absolute `floors` that are configured.

A paired comparison is one of four outcomes: "better" (interval above 0), "tie" (interval holds 0), "below,
within the margin" (interval below 0, not wholly below -margin) and "worse" (wholly below -margin: fails).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.export.embedders import ONEHOT
from models.probes.probe import GATE_SET, HEADLINE, headline_results, paired_differences

METRIC_NAMES = tuple(name for names in HEADLINE.values() for name in names)
BETTER, TIE, WITHIN_MARGIN, WORSE = "better", "tie", "below, within the margin", "worse"
PAIRED_KINDS = {"onehot": "one-hot", "regression": "last blessed"}


@dataclass(frozen=True)
class GateRules:
    min_context_gain: float | None = 0.0  # None: not gated
    # Any confident deficit against one-hot fails: an embedding that is surely worse than residue identity hurts.
    onehot_margin: float = 0.0
    # A retrained model may be confidently worse than the last blessed one by under a point (the bundled SS valid
    # set resolves about ±0.6 points of Q3) without being refused.
    regression_margin: float = 0.01
    floors: dict[str, float] = field(default_factory=dict)
    gated_metrics: list[str] = field(default_factory=lambda: list(METRIC_NAMES))

    def __post_init__(self):
        check_metric_names(self.floors, "gate.floors")
        check_metric_names(dict.fromkeys(self.gated_metrics), "gate.gated_metrics")
        for name in ("onehot_margin", "regression_margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"gate.{name} must be a number in [0, 1] (a difference of accuracies), not {value}")
        if self.min_context_gain is not None and not math.isfinite(self.min_context_gain):
            raise ValueError(f"gate.min_context_gain must be a finite number of nats or null, not "
                             f"{self.min_context_gain}")


def paired_outcome(interval: tuple[float, float] | list[float], margin: float) -> str:
    """better, tie, below within the margin, or worse: where a paired 95% interval lies against 0 and -margin."""
    low, high = interval
    if low > 0:
        return BETTER
    if high >= 0:
        return TIE
    return WITHIN_MARGIN if high >= -margin else WORSE


@dataclass(frozen=True)
class Check:
    metric: str
    value: float
    bound: float
    kind: str  # "context_gain", "onehot", "regression" or "floor"
    interval: tuple[float, float] | None = None  # the paired 95% interval of a paired check

    @property
    def outcome(self) -> str | None:
        """A paired check's outcome (see the module docstring); None for the others."""
        if self.kind not in PAIRED_KINDS or self.interval is None or any(map(math.isnan, self.interval)):
            return None
        return paired_outcome(self.interval, -self.bound)

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.kind in PAIRED_KINDS:
            return self.outcome not in (None, WORSE)
        return self.value > self.bound if self.kind == "context_gain" else self.value >= self.bound

    def describe(self) -> str:
        what = {"context_gain": "the 95% interval's lower end must be above it",
                "floor": "absolute floor"}.get(self.kind)
        if self.kind in PAIRED_KINDS:
            what = (f"candidate minus {PAIRED_KINDS[self.kind]}, paired; fails only if the whole interval is below "
                    f"{self.bound:+.4f}")
            if self.outcome is None:
                return f"{self.metric}: not measured ({what}) — FAILED"
            low, high = self.interval
            return (f"{self.metric} {self.value:+.4f} [{low:+.4f}, {high:+.4f}]: {self.outcome} ({what})"
                    f"{'' if self.passed else ' — FAILED'}")
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
        checks += [Check(f"{metric} − one-hot", result["difference"], -rules.onehot_margin, "onehot",
                         tuple(result["ci95"]))
                   for metric, result in sorted(paired.items()) if _gated(metric, rules)]
    if blessed:
        paired = paired_differences(candidate, blessed, sets=(GATE_SET,))
        checks += [Check(f"{metric} − last blessed", result["difference"], -rules.regression_margin, "regression",
                         tuple(result["ci95"]))
                   for metric, result in sorted(paired.items()) if _gated(metric, rules)]
    checks += [Check(metric, value, float(rules.floors[metric.rsplit("/", 1)[1]]), "floor")
               for metric, value in sorted(headline.items())
               if _gated(metric, rules) and metric.rsplit("/", 1)[1] in rules.floors]
    return checks
