"""Incident intake over HTTP: `POST /incidents` (our JSON) and `POST /alertmanager` (Prometheus
Alertmanager's webhook, version 4), both behind `Authorization: Bearer <AIMS_INTAKE_TOKEN>`.

Both end in the same use case as `aims incident report` (aims_core/services/intake.py): the
incident is recorded and its first Slack message delivered *before* the response goes out, then
the playbook run is started. Nothing is trusted before the token is checked (in constant time),
and nothing is written before the whole payload is checked: one bad alert in a group of twenty
refuses the group, naming the alert and the field, so Alertmanager's retry after the fix records
each alert once.

Answers: 201 a new incident, its message at Slack and its run started; 202 recorded, but a
message is still queued (Slack unavailable) or the run did not start (the body says which and
why); 200 nothing new (repeats attached, resolved alerts noted); 400 malformed JSON, 401 missing
or wrong token (audited as `intake.refused`, without the token sent), 413 too large, 422
invalid content, 503 no token configured.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from slack_sdk import WebClient
from starlette.concurrency import run_in_threadpool

from aims_core.errors import AimsError
from aims_core.ports import Runs
from aims_core.rules.incident import IncidentPolicyInvalid, incident_policy
from aims_core.services import intake
from aims_core.services.intake import IntakeItem, IntakeRejected, IntakeResult, ItemResult
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from notifications.requests import read_capped, refusal
from notifications.slack import SlackDelivery, intake_client

log = logging.getLogger(__name__)

#: An Alertmanager group of a few hundred alerts is well under this.
MAX_INTAKE_BYTES: Final = 1024 * 1024
MAX_ALERTS: Final = 1000
_TITLE_MAX: Final = 300

M = TypeVar("M", bound=BaseModel)


# --- payloads ----------------------------------------------------------------------------------


class IncidentPayload(BaseModel):
    """`POST /incidents`: an incident reported by a person or a tool."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(min_length=1, max_length=200, description="The AI system's name.")
    severity: str = Field(min_length=1, max_length=8, description="SEV1 (worst) .. SEV4.")
    category: str = Field(min_length=1, max_length=40, description="bias, model-failure, ...")
    title: str = Field(min_length=1, max_length=_TITLE_MAX)
    summary: str = Field(default="", max_length=20_000)
    aware_at: AwareDatetime | None = Field(
        default=None, description="When the organisation became aware (default: now)."
    )
    fingerprint: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Repeats with the same fingerprint attach to the open incident.",
    )
    harm: list[str] = Field(default_factory=list, max_length=20)


class Alert(BaseModel):
    """One alert of an Alertmanager group (webhook version 4)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str | None = Field(default=None, max_length=200)


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook body, version 4 (unknown extra fields are ignored: newer
    Alertmanagers may add some)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=200)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert] = Field(min_length=1, max_length=MAX_ALERTS)


def firing_webhook(
    labels: dict[str, str],
    annotations: dict[str, str],
    fingerprint: str,
    *,
    starts_at: str = "2026-11-24T07:41:30.482139551Z",
    source: str = "http://prometheus-0:9090/graph?g0.expr=fairness",
) -> dict[str, Any]:
    """The body Alertmanager posts when one alert of a group fires (for the demo day and the
    benchmark, which send what a real Alertmanager would)."""
    return {
        "receiver": "aims-intake",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": starts_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": source,
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-0:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "truncatedAlerts": 0,
    }


# --- mapping to intake items -------------------------------------------------------------------


def incident_item(payload: IncidentPayload) -> IntakeItem:
    data = intake.incident_in(
        source="api",
        system=payload.system,
        severity=payload.severity,
        category=payload.category,
        title=payload.title,
        summary=payload.summary,
        aware_at=payload.aware_at,
        fingerprint=payload.fingerprint,
        harm=payload.harm,
    )
    return IntakeItem(incident=data)


def alert_fingerprint(alert: Alert) -> str:
    """Alertmanager's own fingerprint; for a sender that omits it, a hash of the labels (what
    Alertmanager's fingerprint is a hash of, too)."""
    if alert.fingerprint:
        return alert.fingerprint
    canonical = json.dumps(sorted(alert.labels.items()), separators=(",", ":"))
    return "labels-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _severity(value: str, mapping: dict[str, str], known: list[str]) -> str | None:
    """The SEV for a `severity` label: the configured map (case-insensitive), or a label that
    already names a severity of the classification (`SEV2`, `sev2`)."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    if value.lower() in lowered:
        return lowered[value.lower()]
    if value.upper() in known:
        return value.upper()
    return None


def _title(alert: Alert, system: str) -> str:
    title = (
        alert.annotations.get("summary") or alert.labels.get("alertname") or f"Alert on {system}"
    )
    title = " ".join(title.split())
    return title if len(title) <= _TITLE_MAX else title[: _TITLE_MAX - 1] + "…"


def _summary(alert: Alert, payload: AlertmanagerWebhook) -> str:
    lines = [alert.annotations.get("description", "").strip()]
    if alert.generator_url:
        lines.append(f"Source: {alert.generator_url}")
    if runbook := alert.annotations.get("runbook_url"):
        lines.append(f"Runbook: {runbook}")
    if payload.external_url:
        lines.append(f"Alertmanager: {payload.external_url} (receiver {payload.receiver})")
    return "\n".join(line for line in lines if line)


def _resolved(alert: Alert, payload: AlertmanagerWebhook) -> dict[str, Any]:
    """What a resolved alert leaves on the timeline (endsAt: a re-send writes nothing)."""
    return {
        "source": "alertmanager",
        "receiver": payload.receiver,
        "startsAt": alert.starts_at.isoformat(),
        "endsAt": alert.ends_at.isoformat() if alert.ends_at else None,
        "summary": alert.annotations.get("summary", ""),
        "generatorURL": alert.generator_url,
    }


def alert_items(payload: AlertmanagerWebhook, settings: Settings) -> list[IntakeItem]:
    """One intake item per alert: firing → report, resolved → resolve. Every alert is mapped
    and checked before anything is written; IntakeRejected lists every problem of every alert,
    in alert order, naming the alert and the label."""
    items: list[IntakeItem] = []
    problems: list[str] = []
    now = datetime.now(UTC)
    known = incident_policy(settings).classification.severity_ids
    mapped = ", ".join(f"{k}→{v}" for k, v in settings.alertmanager_severity_map.items())
    for i, alert in enumerate(payload.alerts):
        where = f"alerts[{i}]"
        system = alert.labels.get("ai_system", "").strip()
        if not system:
            problems.append(
                f"{where}.labels.ai_system: missing: every alert needs an ai_system label "
                "naming the AI system"
            )
        raw_severity = alert.labels.get("severity", "").strip()
        severity = _severity(raw_severity, settings.alertmanager_severity_map, known)
        if not raw_severity:
            problems.append(
                f"{where}.labels.severity: missing: every alert needs a severity label "
                f"({mapped}; or one of {', '.join(known)})"
            )
        elif severity is None:
            problems.append(
                f"{where}.labels.severity: unknown severity '{raw_severity}' (mapped: {mapped}; "
                f"or one of {', '.join(known)}; map more in AIMS_ALERTMANAGER_SEVERITY_MAP)"
            )
        if not system or severity is None:
            continue
        harm = alert.labels.get("harm") or alert.annotations.get("harm") or ""
        try:
            data = intake.incident_in(
                where,
                source="alertmanager",
                system=system,
                severity=severity,
                category=alert.labels.get("category") or settings.alertmanager_default_category,
                title=_title(alert, system),
                summary=_summary(alert, payload),
                fingerprint=alert_fingerprint(alert),
                # Aware when the alert began; never later than now (a sender's clock ahead).
                aware_at=min(alert.starts_at, now),
                labels=alert.labels,
                harm=[h.strip() for h in harm.split(",") if h.strip()],
            )
        except AimsError as exc:
            problems.append(str(exc))
            continue
        items.append(
            IntakeItem(
                action="report" if alert.status == "firing" else "resolve",
                incident=data,
                where=where,
                paths={
                    "system": f"{where}.labels.ai_system",
                    "severity": f"{where}.labels.severity",
                    "category": f"{where}.labels.category"
                    if "category" in alert.labels
                    else "AIMS_ALERTMANAGER_DEFAULT_CATEGORY",
                },
                resolved=_resolved(alert, payload) if alert.status == "resolved" else {},
            )
        )
    problems += intake.problems(settings, items)
    if problems:
        raise IntakeRejected(sorted(problems, key=_alert_index))
    return items


def _alert_index(problem: str) -> int:
    """Problems sort by alert (stable within one): `alerts[12].labels...` → 12."""
    head = problem.removeprefix("alerts[").split("]", 1)[0]
    return int(head) if head.isdigit() else -1


# --- the router --------------------------------------------------------------------------------


def intake_router(
    settings: Settings,
    *,
    slack_client: WebClient | None = None,
    runs: Runs | None = None,
    max_body_bytes: int = MAX_INTAKE_BYTES,
) -> APIRouter:
    """The intake routes, for `create_app` to include. `slack_client` and `runs` are
    injectable (tests, benchmark); by default the bot token's client (short timeouts: an alert
    sender must not wait out Slack) and the Prefect engine."""
    router = APIRouter()
    runs = runs if runs is not None else PrefectRuns()
    delivery = SlackDelivery(
        settings, slack_client if slack_client is not None else intake_client(settings)
    )

    async def take_in(items: list[IntakeItem], actor: Actor) -> IntakeResult | JSONResponse:
        try:
            return await run_in_threadpool(
                intake.take_in, settings, items, actor, runs=runs, delivery=delivery
            )
        except IntakeRejected as exc:
            return _error(422, str(exc), exc.problems)
        except IncidentPolicyInvalid as exc:
            return _policy_error(exc)
        except AimsError as exc:
            return _error(422, str(exc))

    @router.post("/incidents")
    async def post_incident(request: Request) -> JSONResponse:
        """Report one incident (JSON body, IncidentPayload)."""
        parsed = await _authorised_payload(settings, request, IncidentPayload, max_body_bytes)
        if isinstance(parsed, JSONResponse):
            return parsed
        try:
            item = incident_item(parsed)
        except AimsError as exc:
            return _error(422, str(exc))
        result = await take_in([item], Actor(who="api:intake-token", channel="api"))
        if isinstance(result, JSONResponse):
            return result
        (one,) = result.items
        body = {"ok": True, "message": _item_message(one), **_incident_json(one)}
        return JSONResponse(body, status_code=_status(result))

    @router.post("/alertmanager")
    async def post_alertmanager(request: Request) -> JSONResponse:
        """Alertmanager webhook v4: firing alerts open (or attach to) incidents, resolved
        alerts go on the open incident's timeline."""
        parsed = await _authorised_payload(settings, request, AlertmanagerWebhook, max_body_bytes)
        if isinstance(parsed, JSONResponse):
            return parsed
        try:
            items = alert_items(parsed, settings)
        except IntakeRejected as exc:
            return _error(422, str(exc), exc.problems)
        except IncidentPolicyInvalid as exc:
            return _policy_error(exc)
        actor = Actor(who=f"alertmanager:{parsed.receiver}"[:320], channel="api")
        result = await take_in(items, actor)
        if isinstance(result, JSONResponse):
            return result
        reports = [i for i in result.items if i.action == "report"]
        resolves = [i for i in result.items if i.action == "resolve"]
        body: dict[str, Any] = {
            "ok": True,
            "message": "; ".join(_item_message(i) for i in result.items),
            "incidents": [_incident_json(i) for i in reports],
            "resolved": [
                {
                    "alert": i.where,
                    "fingerprint": i.fingerprint,
                    "incident_id": i.incident_id,
                    "note": _item_message(i).removeprefix(f"{i.where}: "),
                }
                for i in resolves
            ],
        }
        if parsed.truncated_alerts:
            body["truncated_alerts"] = parsed.truncated_alerts
            body["message"] += (
                f"; {parsed.truncated_alerts} alert(s) were left out by Alertmanager "
                "(max_alerts): they arrive with the group's next notification"
            )
        return JSONResponse(body, status_code=_status(result))

    return router


# --- helpers -----------------------------------------------------------------------------------


def _error(status: int, message: str, problems: list[str] | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return refusal(status, message, problems, headers=headers)


def _policy_error(exc: IncidentPolicyInvalid) -> JSONResponse:
    """Our configuration is broken, not the sender's payload: 503, so Alertmanager retries."""
    log.error("incident intake: %s", exc)
    return _error(503, f"the incident policy file {exc.source} is invalid", exc.problems)


def _token_refusal(settings: Settings, request: Request) -> tuple[JSONResponse, str] | None:
    """None when the bearer token matches; otherwise the refusal (503 when none is set) and
    why, for the audit trail."""
    expected = settings.intake_token.get_secret_value().strip() if settings.intake_token else ""
    if not expected:
        return _error(
            503,
            "incident intake is not configured: set AIMS_INTAKE_TOKEN (a long random string) "
            "and send it as `Authorization: Bearer <token>`",
        ), "not-configured"
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return (
            _error(401, "missing bearer token: send `Authorization: Bearer <intake token>`"),
            "missing-token",
        )
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        log.warning("intake refused: wrong bearer token (from %s)", _peer(request))
        return _error(401, "invalid intake token"), "wrong-token"
    return None


def _audit_refusal(settings: Settings, request: Request, reason: str) -> None:
    """A 401 is a refused attempt, and refusals are audited: who (the peer), where, why; never
    the token that was sent. Best effort: a database failure must not turn the 401 into a 500."""
    peer = _peer(request)
    try:
        uow = UnitOfWork(settings)
        with uow:
            uow.audit(
                Actor(who=f"api:unauthenticated@{peer}"[:320], channel="api"),
                "intake.refused",
                f"intake:{request.url.path}"[:200],
                reason=reason,
                peer=peer,
            )
            uow.commit()
    except Exception as exc:
        log.warning("intake refusal (%s from %s) not audited: %s", reason, peer, exc)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _authorised_payload(
    settings: Settings, request: Request, model: type[M], limit: int
) -> M | JSONResponse:
    """Token, then size, then JSON, then the model: the payload, or the refusal to send."""
    refused = _token_refusal(settings, request)
    if refused is not None:
        response, reason = refused
        if response.status_code == 401:
            await run_in_threadpool(_audit_refusal, settings, request, reason)
        return response
    body = await read_capped(request, limit)
    if body is None:
        return _error(413, f"request body larger than {limit} bytes")
    try:
        raw = json.loads(body)
    except UnicodeDecodeError:
        return _error(400, "malformed JSON: the body is not UTF-8 text")
    except json.JSONDecodeError as exc:
        return _error(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:  # `[[[[...` a few thousand deep: the decoder gives up
        return _error(400, "malformed JSON: nested too deeply")
    if not isinstance(raw, dict):
        return _error(400, f"malformed payload: expected a JSON object, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()[:20]]
        return _error(422, f"invalid payload: {problems[0]}", problems)


def _problem(err: Any) -> str:
    """`alerts[0].labels: Input should be a valid dictionary` from a pydantic error."""
    path = ""
    for part in err.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{path}: {msg}" if path else msg


def _status(result: IntakeResult) -> int:
    if result.pending:
        return 202
    return 201 if result.created else 200


def _incident_json(item: ItemResult) -> dict[str, Any]:
    n = item.notification
    return {
        "incident_id": item.incident_id,
        "alert": item.where,
        "fingerprint": item.fingerprint,
        "system": item.system,
        "severity": item.severity,
        "category": item.category,
        "created": item.created,
        "attached": item.attached,
        "notified": n.sent if n else 0,
        "notification": n.model_dump() if n else None,
        "run": item.run.model_dump() if item.run else None,
        "run_error": item.run_error,
        **({"error": item.error} if item.error else {}),
    }


def _item_message(item: ItemResult) -> str:
    label = f"{item.where}: " if item.where else ""
    if item.error:
        return f"{label}not recorded: {item.error}"
    if item.action == "resolve":
        if item.incident_id is None:
            return f"{label}resolved: no open incident with fingerprint {item.fingerprint}"
        return (
            f"{label}resolved: added to incident {item.incident_id}'s timeline "
            "(it stays open until closed)"
        )
    if not item.created:
        return f"{label}repeat attached to open incident {item.incident_id}"
    parts = [f"{label}incident {item.incident_id} recorded"]
    n = item.notification
    if n is not None:
        parts.append(
            {
                "delivered": f"first message delivered to Slack ({n.sent} sent)",
                "logged": "first message logged (no Slack bot token)",
                "queued": f"notification queued ({n.detail})",
                "failed": f"notification failed ({n.detail})",
                "none": "no notification queued",
            }[n.state]
        )
    parts.append(f"playbook run {item.run.name} started" if item.run else "run not started")
    return ", ".join(parts)
