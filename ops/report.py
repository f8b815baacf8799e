"""What a check found, and how ``verify`` prints it: one line per checklist item, or JSON."""

import json
from dataclasses import asdict, dataclass, field

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Result:
    """One checklist item's outcome: a status, the sentence with its figures, the raw figures."""

    name: str
    status: str
    detail: str
    figures: dict = field(default_factory=dict)


def passed(name: str, detail: str, **figures) -> Result:
    """Return a PASS."""
    return Result(name, PASS, detail, figures)


def warned(name: str, detail: str, **figures) -> Result:
    """Return a WARN: worth a look, not a reason to stop the rollout."""
    return Result(name, WARN, detail, figures)


def failed(name: str, detail: str, **figures) -> Result:
    """Return a FAIL: stop and fix before going on."""
    return Result(name, FAIL, detail, figures)


def summary(results: list[Result]) -> dict[str, int]:
    """Return how many results have each status."""
    return {status: sum(r.status == status for r in results) for status in (PASS, WARN, FAIL)}


def as_text(results: list[Result], *, stage: str, target: str) -> str:
    """Return the report for a terminal: a header, one line per check, a summary."""
    width = max((len(r.name) for r in results), default=0)
    lines = [f"verify --stage {stage} on {target}"]
    lines += [f"{r.status}  {r.name:<{width}}  {r.detail}" for r in results]
    counts = summary(results)
    lines.append(
        f"summary: {counts[PASS]} PASS, {counts[WARN]} WARN, {counts[FAIL]} FAIL"
        + (" -> not ready" if counts[FAIL] else " -> ok")
    )
    return "\n".join(lines)


def as_json(results: list[Result], *, stage: str, target: str) -> str:
    """Return the report for machines."""
    counts = summary(results)
    return json.dumps(
        {
            "stage": stage,
            "target": target,
            "ok": counts[FAIL] == 0,
            "summary": counts,
            "checks": [asdict(r) for r in results],
        },
        indent=2,
        default=str,
    )
