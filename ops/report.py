"""What a ``verify`` check found, and how it is printed: one line per checklist item, or JSON."""

import json
from dataclasses import asdict, dataclass, field

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Result:
    """One checklist item: its status, the sentence with its figures, the raw figures."""

    name: str
    status: str
    detail: str
    figures: dict = field(default_factory=dict)


# A check returns its verdict, (status, detail, figures); verify names it after the check.
def passed(detail: str, **figures) -> tuple:
    return PASS, detail, figures


def warned(detail: str, **figures) -> tuple:
    return WARN, detail, figures  # worth a look, not a reason to stop the rollout


def failed(detail: str, **figures) -> tuple:
    return FAIL, detail, figures  # stop and fix before going on


def render(results: list[Result], *, stage: str, target: str, as_json: bool) -> str:
    """Return the report: a header, one line per check and a summary; or one JSON document."""
    counts = {status: sum(r.status == status for r in results) for status in (PASS, WARN, FAIL)}
    if as_json:
        checks = [asdict(r) for r in results]
        report = {"stage": stage, "target": target, "ok": not counts[FAIL], "summary": counts}
        return json.dumps({**report, "checks": checks}, indent=2, default=str)
    width = max((len(r.name) for r in results), default=0)
    return "\n".join(
        [
            f"verify --stage {stage} on {target}",
            *(f"{r.status}  {r.name:<{width}}  {r.detail}" for r in results),
            f"summary: {counts[PASS]} PASS, {counts[WARN]} WARN, {counts[FAIL]} FAIL"
            + (" -> not ready" if counts[FAIL] else " -> ok"),
        ]
    )
