"""Intake end to end: an Alertmanager v4 bias alert on cv-screening (high risk), posted to the
bridge app in process, starts an `incident-response` deployment run on the real Prefect API, with
the incident id as its parameter, after the first message reached the (fake) Slack.

The session's `engine` (Prefect API + served runner + fake Slack) and its shared database; the
rest of the playbook (containment hook, CAPA, closure) is tested with the flow itself.
"""

from __future__ import annotations

import time
import uuid

from fastapi.testclient import TestClient
from pydantic import SecretStr

from aims_core.db import session_factory
from aims_core.models import Incident
from notifications.app import create_app

TOKEN = "e2e-intake-token-" + "z" * 24


def test_alertmanager_alert_starts_the_incident_response_run_with_the_incident_id(engine) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    settings = engine.settings.model_copy(update={"intake_token": SecretStr(TOKEN)})
    fingerprint = uuid.uuid4().hex[:16]  # the shared database: an alert of this test's own
    payload = {
        "receiver": "aims-intake",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "FairnessDisparateImpactLow",
                    "ai_system": "cv-screening",
                    "severity": "high",
                    "category": "bias",
                    "job": "fairness-monitor",
                },
                "annotations": {
                    "summary": "cv-screening: selection-rate ratio for applicants over 50 is 0.61",
                    "description": "Below the 0.8 four-fifths threshold for 30m.",
                },
                "startsAt": "2026-11-24T07:41:30.482139551Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus-0:9090/graph?g0.expr=fairness",
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": {"alertname": "FairnessDisparateImpactLow"},
        "commonLabels": {"alertname": "FairnessDisparateImpactLow", "ai_system": "cv-screening"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-0:9093",
        "version": "4",
        "groupKey": '{}:{alertname="FairnessDisparateImpactLow"}',
        "truncatedAlerts": 0,
    }
    posted_before = len(engine.slack.calls("chat.postMessage", ok_only=True))

    with TestClient(create_app(settings)) as client:
        sent_at = time.time()
        response = client.post(
            "/alertmanager", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        returned_at = time.time()

    assert response.status_code == 201, response.text
    (item,) = response.json()["incidents"]
    assert item["created"] and item["notification"]["state"] == "delivered"
    run_id = item["run"]["id"]
    assert item["run"]["url"].endswith(f"/runs/flow-run/{run_id}")

    # The first message reached Slack inside the request, before the run was even asked for.
    new_posts = engine.slack.calls("chat.postMessage", ok_only=True)[posted_before:]
    assert new_posts and sent_at <= new_posts[0].at <= returned_at

    # The run exists in Prefect: the incident-response deployment, with the incident id.
    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(run_id)
        deployment = prefect.read_deployment(run.deployment_id)
    assert deployment.name == "incident-response"
    assert run.parameters == {"incident_id": item["incident_id"]}
    assert run.name == f"incident {item['incident_id']} SEV2 bias: cv-screening"
    assert {"incident", "cv-screening", "high", "SEV2", "bias-fairness"} <= set(run.tags)

    # And the incident record points at it.
    with session_factory(settings.effective_database_url)() as s:
        row = s.get(Incident, item["incident_id"])
        assert row is not None
        assert (row.fingerprint, row.flow_run_id) == (fingerprint, run_id)
