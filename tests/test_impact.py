"""Impact assessments: the questionnaire as data, the service and its CLI, on SQLite and PostgreSQL.

Uses the demo organisation: support-chatbot (limited risk, owner ops.owner) and credit-scoring
(high risk). No Prefect here; the flow is exercised in test_impact_e2e.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from records import count
from sqlalchemy import select

from aims_core import reports
from aims_core.db import get_engine
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import AuditEvent, Evidence, ImpactAssessment, ImpactStatus
from aims_core.rules.impact_questionnaire import (
    PACKAGED_FILE,
    QuestionKind,
    QuestionnaireError,
    parse,
    questionnaire,
)
from aims_core.services import approvals, evidence, impact
from aims_core.services.approvals import DecisionIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OWNER = f"ops.owner{D}"  # owns support-chatbot: the default assessor
ETHICS = f"ethics{D}"
CREDIT_OWNER = f"credit.owner{D}"
SYSTEM = "support-chatbot"


# --- helpers -----------------------------------------------------------------------------------


def full_answers(**changes: Any) -> dict[str, Any]:
    """A valid answer to every question (text answers carry their question id, to find them)."""
    out: dict[str, Any] = {}
    for q in questionnaire().questions.values():
        if q.kind is QuestionKind.choice:
            out[q.id] = q.options[-1]
        elif q.kind is QuestionKind.scale:
            out[q.id] = 2
        else:
            out[q.id] = f"Answer to {q.id}: line one.\nLine two & more."
    out.update(changes)
    return out


def required_only() -> dict[str, Any]:
    required = set(questionnaire().required_ids())
    return {k: v for k, v in full_answers().items() if k in required}


def actions(settings: Settings, assessment_id: int) -> list[str]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return list(
            conn.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == f"impact-assessment:{assessment_id}")
                .order_by(AuditEvent.id)
            )
        )


def approved(org: UnitOfWork, actor: Actor, system: str = SYSTEM) -> impact.ImpactAssessmentOut:
    """An assessment taken through answers, completion and one approval by the ethics member."""
    a = impact.start(org, system, actor)
    impact.answer(org, a.id, full_answers(), actor)
    impact.complete(org, a.id, actor)
    request = approvals.create_request(org, impact.approval_spec(org, a.id), actor)
    for email in (ETHICS, CREDIT_OWNER)[: request.quorum]:
        approvals.decide(
            org, DecisionIn(request_id=request.id, person=email, outcome="approve"), actor
        )
    return impact.record_decision(org, a.id, actor)


# --- the questionnaire -------------------------------------------------------------------------


def test_packaged_questionnaire_covers_the_assessment_areas_and_annex_a5() -> None:
    q = questionnaire()
    assert q.ref == "aims-impact@1"
    assert {"intended-use", "individuals", "groups", "society", "misuse"} <= {
        s.id for s in q.sections
    }
    controls = {c for x in q.questions.values() for c in x.controls}
    assert {"A.5.2", "A.5.4", "A.5.5", "A.9.4"} <= controls
    kinds = {x.kind for x in q.questions.values()}
    assert kinds == set(QuestionKind)
    assert q.approval.quorum_for("high") == 2
    assert q.approval.quorum_for("limited") == 1


def _doc() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("aims_core.data").joinpath(PACKAGED_FILE).read_text("utf-8")
    return yaml.safe_load(text)


def test_an_invalid_questionnaire_is_refused_naming_every_problem() -> None:
    doc = _doc()
    first = doc["sections"][0]["questions"]
    first[0]["controls"] = ["A.5.99"]  # unknown control
    first[1]["id"] = first[0]["id"]  # duplicate id
    first[2]["options"] = ["only-one"]  # a choice with one option
    first[3]["options"] = ["a", "b"]  # options on a scale
    doc["sections"][1]["questions"][0]["id"] = "copy"  # shadows BaseModel.copy
    doc["approval"]["approver_roles"].append("wizard")  # unknown role
    doc["approval"]["quorum"] = {"default": 0, "extreme": 2}  # below 1, unknown tier
    with pytest.raises(QuestionnaireError) as exc:
        parse(doc, "org.yaml")
    text = str(exc.value)
    for expected in (
        "unknown control 'A.5.99'",
        "duplicate question id",
        "a choice needs at least two options",
        "options are only for kind choice",
        "id 'copy' is reserved",
        "unknown role 'wizard'",
        "approval.quorum.default: must be at least 1, got 0",
        "approval.quorum.extreme: unknown risk tier",
    ):
        assert expected in text, expected
    assert text.startswith("org.yaml: 8 problem(s)")


def test_structural_errors_are_listed_with_their_place() -> None:
    doc = _doc()
    doc["sections"][0]["questions"][0]["kind"] = "essay"
    doc["sections"][1]["questions"][0]["mandatory"] = True
    del doc["sections"][2]["questions"][0]["required"]
    with pytest.raises(QuestionnaireError) as exc:
        parse(copy.deepcopy(doc), "org.yaml")
    problems = exc.value.problems
    assert any(p.startswith("sections.0.questions.0.kind:") for p in problems)
    assert any(p.startswith("sections.1.questions.0.mandatory: Extra inputs") for p in problems)
    assert any(p.startswith("sections.2.questions.0.required: Field required") for p in problems)


@pytest.mark.parametrize(
    ("question", "value", "stored"),
    [
        ("severity_individuals", 4, 4),
        ("severity_individuals", " 5 ", 5),
        ("vulnerable_people", "NO", "no"),
        ("intended_purpose", "  trimmed  ", "trimmed"),
        ("intended_purpose", 42, "42"),
        ("fairness_findings", "   ", None),
        ("severity_individuals", None, None),
    ],
)
def test_a_question_checks_and_normalises_its_answer(
    question: str, value: object, stored: object
) -> None:
    assert questionnaire().questions[question].check(value) == stored


@pytest.mark.parametrize(
    ("question", "value", "message"),
    [
        ("severity_individuals", 7, "7 is outside the scale 1 to 5"),
        ("severity_individuals", 0, "0 is outside the scale 1 to 5"),
        ("severity_individuals", "high", "'high' is not a whole number from 1 to 5"),
        ("severity_individuals", 2.5, "expected a whole number from 1 to 5"),
        ("vulnerable_people", "maybe", "'maybe' is not one of: yes, no, unknown"),
        ("vulnerable_people", True, "expected one of: yes, no, unknown, got true"),
        ("intended_purpose", ["a"], "expected text, got list"),
        ("intended_purpose", "x" * 10_001, "longer than 10000 characters"),
    ],
)
def test_a_question_refuses_what_does_not_fit(question: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        questionnaire().questions[question].check(value)


# --- starting ----------------------------------------------------------------------------------


def test_one_open_assessment_per_system_and_idempotent_for_its_run(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = impact.start(org, SYSTEM, actor, flow_run_id="run-1")
    assert (a.status, a.assessor, a.questionnaire) == (ImpactStatus.draft, OWNER, "aims-impact@1")
    assert a.missing_required == questionnaire().required_ids()
    # The same run (a re-run after a resume) gets its assessment back; nothing is written.
    assert impact.start(org, SYSTEM, actor, flow_run_id="run-1").id == a.id
    with pytest.raises(Conflict, match=f"impact assessment {a.id} of {SYSTEM} is still draft"):
        impact.start(org, SYSTEM, actor, flow_run_id="run-2")
    assert count(settings, ImpactAssessment) == 1
    # A run that ended unfinished is replaced: the new run continues the same assessment.
    taken = impact.start(org, SYSTEM, actor, flow_run_id="run-3", take_over=True)
    assert (taken.id, taken.flow_run_id) == (a.id, "run-3")
    assert actions(settings, a.id) == ["impact.started", "impact.run-replaced"]
    # Another system is independent; the assessor can be named.
    other = impact.start(org, "credit-scoring", actor, assessor=f"DS.Lead{D}")
    assert (other.assessor, other.risk_tier) == (f"ds.lead{D}", "high")
    with pytest.raises(NotFound, match="no AI system named 'nope'"):
        impact.start(org, "nope", actor)
    with pytest.raises(NotFound) as exc:
        impact.start(org, "fraud-detection", actor, assessor=f"nobody{D}")
    assert exc.value.field == "assessor"
    assert count(settings, ImpactAssessment) == 2


# --- answering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "field", "message"),
    [
        ({"favourite_colour": "blue"}, "favourite_colour", "no such question"),
        ({"vulnerable_people": "perhaps"}, "vulnerable_people", "'perhaps' is not one of"),
        ({"societal_scale": 6}, "societal_scale", "6 is outside the scale 1 to 5"),
        ({"intended_purpose": "   "}, "intended_purpose", "required: give an answer"),
        ({"personal_data": ""}, "personal_data", "required: give an answer"),
    ],
)
def test_a_bad_answer_names_its_question_and_writes_nothing(
    org: UnitOfWork,
    settings: Settings,
    actor: Actor,
    answers: dict[str, Any],
    field: str,
    message: str,
) -> None:
    a = impact.start(org, SYSTEM, actor)
    impact.answer(org, a.id, {"severity_individuals": 3}, actor)
    # A valid answer in the same call is not recorded either: all or nothing.
    with pytest.raises(InvalidInput) as exc:
        impact.answer(org, a.id, {"likelihood_individuals": 2, **answers}, actor)
    assert exc.value.field == field
    assert message in exc.value.message
    assert impact.get(org, a.id).answers == {"severity_individuals": 3}
    assert actions(settings, a.id) == ["impact.started", "impact.answered"]


def test_several_bad_answers_are_listed_together(org: UnitOfWork, actor: Actor) -> None:
    a = impact.start(org, SYSTEM, actor)
    with pytest.raises(InvalidInput) as exc:
        impact.answer(org, a.id, {"societal_scale": 9, "nope": 1, "intended_purpose": "ok"}, actor)
    assert str(exc.value) == (
        "answers: 2 answers refused, none recorded: societal_scale: 9 is outside the scale 1 "
        "to 5; nope: no such question (see `aims impact questions`)"
    )
    assert impact.get(org, a.id).answers == {}
    with pytest.raises(InvalidInput, match="no answers given"):
        impact.answer(org, a.id, {}, actor)


def test_answers_merge_normalise_and_a_blank_clears_an_optional_one(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = impact.start(org, SYSTEM, actor)
    impact.answer(org, a.id, {"severity_individuals": "4", "vulnerable_people": "No"}, actor)
    out = impact.answer(
        org, a.id, {"fairness_findings": " none found ", "severity_individuals": 4}, actor
    )
    assert out.answers == {
        "severity_individuals": 4,
        "vulnerable_people": "no",
        "fairness_findings": "none found",
    }
    assert "severity_individuals" not in out.missing_required
    out = impact.answer(org, a.id, {"fairness_findings": ""}, actor)
    assert "fairness_findings" not in out.answers
    # Repeating what is already recorded changes nothing and audits nothing.
    impact.answer(org, a.id, {"vulnerable_people": "no"}, actor)
    assert actions(settings, a.id).count("impact.answered") == 3
    with get_engine(settings.effective_database_url).connect() as conn:
        details = conn.scalars(
            select(AuditEvent.details)
            .where(AuditEvent.action == "impact.answered")
            .order_by(AuditEvent.id)
        ).all()
    assert details[1] == {"answers": {"fairness_findings": "none found"}}
    assert details[2] == {"answers": {"fairness_findings": None}}


def test_complete_needs_every_required_answer_then_freezes_them(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = impact.start(org, SYSTEM, actor)
    partial = required_only()
    last = partial.pop("transparency")
    impact.answer(org, a.id, partial, actor)
    assert impact.missing_required(org, a.id) == ["transparency"]
    with pytest.raises(InvalidInput, match="1 required question"):
        impact.complete(org, a.id, actor)
    with pytest.raises(Conflict, match="not complete yet"):
        impact.approval_spec(org, a.id)
    impact.answer(org, a.id, {"transparency": last}, actor)
    done = impact.complete(org, a.id, actor)
    assert done.status is ImpactStatus.answered
    assert done.completed_at is not None
    assert impact.complete(org, a.id, actor).completed_at == done.completed_at  # idempotent
    with pytest.raises(Conflict, match="answers are frozen"):
        impact.answer(org, a.id, {"fairness_findings": "late"}, actor)
    assert actions(settings, a.id).count("impact.completed") == 1


# --- approval, record, evidence ----------------------------------------------------------------


def test_the_approval_comes_from_the_questionnaire_and_never_asks_the_assessor(
    org: UnitOfWork, actor: Actor
) -> None:
    a = impact.start(org, SYSTEM, actor)
    impact.answer(org, a.id, required_only(), actor)
    impact.complete(org, a.id, actor)
    spec = impact.approval_spec(org, a.id, flow_run_id="run-9")
    assert spec.subject == f"impact-assessment:{a.id}"
    assert spec.activity == "impact-assessment"
    assert spec.approver_roles == ["ethics-committee", "system-owner"]
    assert (spec.quorum, spec.requester, spec.flow_run_id) == (1, OWNER, "run-9")
    assert "vulnerable people: **unknown**" in spec.details
    assert f"aims impact show {a.id} --markdown" in spec.details
    request = approvals.create_request(org, spec, actor)
    assert OWNER not in request.approvers
    assert ETHICS in request.approvers
    # A high-risk system needs two approvals (quorum from the questionnaire's data).
    b = impact.start(org, "credit-scoring", actor)
    impact.answer(org, b.id, required_only(), actor)
    impact.complete(org, b.id, actor)
    assert impact.approval_spec(org, b.id).quorum == 2


def test_approval_renders_the_record_and_keeps_it_as_evidence_once(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = approved(org, actor)
    assert out.status is ImpactStatus.approved
    assert out.evidence_id is not None and out.html_evidence_id is not None
    assert out.request_id is not None

    md = evidence.list_evidence(settings, subject=f"system:{SYSTEM}", kind="impact-assessment")
    assert [e.id for e in md] == [out.evidence_id]
    assert md[0].media_type.startswith("text/markdown")
    html = evidence.list_evidence(settings, subject=f"impact-assessment:{out.id}")
    assert [(e.id, e.kind) for e in html] == [(out.html_evidence_id, "impact-assessment")]
    with get_engine(settings.effective_database_url).connect() as conn:
        md_text = conn.scalar(select(Evidence.content).where(Evidence.id == out.evidence_id))
    html_text = evidence.store_path(settings, html[0].content_sha256).read_text("utf-8")
    assert md_text == impact.render(org, out.id).markdown
    assert html_text == impact.render(org, out.id).html
    for q in questionnaire().questions.values():
        assert f"`{q.id}`" in md_text
        assert f"<code>{q.id}</code>" in html_text
        if q.kind is QuestionKind.text:
            assert f"> Answer to {q.id}: line one.\n> Line two & more." in md_text
            assert f"Answer to {q.id}: line one.\nLine two &amp; more." in html_text
    assert "**approved**" in md_text
    assert f"approve by Amara Diallo <{ETHICS}> via test" in md_text

    # A retried step finds the decision applied and writes nothing more.
    again = impact.record_decision(org, out.id, actor)
    assert (again.evidence_id, again.html_evidence_id) == (out.evidence_id, out.html_evidence_id)
    assert count(settings, Evidence, Evidence.kind == "impact-assessment") == 2
    assert actions(settings, out.id) == [
        "impact.started",
        "impact.answered",
        "impact.completed",
        "evidence.appended",  # the HTML record, on the assessment's own subject
        "impact.approved",
    ]
    assert evidence.verify(settings).intact
    # Approved is final: the next assessment of the system may start.
    assert impact.start(org, SYSTEM, actor).id != out.id


def test_a_rejection_records_the_reasons_and_no_evidence(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = impact.start(org, SYSTEM, actor)
    impact.answer(org, a.id, full_answers(), actor)
    impact.complete(org, a.id, actor)
    request = approvals.create_request(org, impact.approval_spec(org, a.id), actor)
    with pytest.raises(Conflict, match=f"approval request {request.id} is still open"):
        impact.record_decision(org, a.id, actor)
    approvals.decide(
        org,
        DecisionIn(
            request_id=request.id, person=ETHICS, outcome="reject", comment="misuse too thin"
        ),
        actor,
    )
    out = impact.record_decision(org, a.id, actor)
    assert (out.status, out.evidence_id, out.request_id) == (
        ImpactStatus.rejected,
        None,
        request.id,
    )
    assert count(settings, Evidence, Evidence.kind == "impact-assessment") == 0
    with get_engine(settings.effective_database_url).connect() as conn:
        details = conn.scalar(
            select(AuditEvent.details).where(AuditEvent.action == "impact.rejected")
        )
    assert details["reasons"] == [f"{ETHICS}: misuse too thin"]
    assert impact.start(org, SYSTEM, actor).status is ImpactStatus.draft


def test_rendering_escapes_html_and_marks_a_draft(org: UnitOfWork, actor: Actor) -> None:
    a = impact.start(org, SYSTEM, actor)
    impact.answer(org, a.id, {"intended_purpose": "<script>alert(1)</script> | x"}, actor)
    rendered = impact.render(org, a.id)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | x" in rendered.html
    assert "<script>" not in rendered.markdown
    assert "> &lt;script>alert(1)&lt;/script> | x" in rendered.markdown
    assert "**Draft**: 18 required question(s) unanswered" in rendered.markdown
    assert "_(not answered)_" in rendered.markdown
    assert "Not submitted for approval yet." in rendered.html


def test_reports_render_autoescapes_only_html_templates() -> None:
    env = reports.environment()
    assert env.autoescape("x.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("x.md.j2") is False  # type: ignore[operator]


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_answers_by_question_and_by_file_show_and_errors(
    org: UnitOfWork, run_cli: Any, tmp_path: Path, actor: Actor
) -> None:
    a = impact.start(org, SYSTEM, actor)
    listed = run_cli("impact", "questions")
    assert listed.exit_code == 0, listed.output
    assert "severity_individuals" in listed.output
    template = run_cli("impact", "questions", "--template")
    assert set(yaml.safe_load(template.output)) == set(questionnaire().questions)

    bad = run_cli("impact", "answer", SYSTEM, "-q", "severity_individuals", "-v", "9")
    assert bad.exit_code == 2
    assert "error: severity_individuals: 9 is outside the scale 1 to 5" in bad.output
    assert impact.get(org, a.id).answers == {}

    one = run_cli(
        "impact", "answer", str(a.id), "--question", "severity_individuals", "--value", "3"
    )
    assert one.exit_code == 0, one.output
    assert f"recorded 1 answer(s) on impact assessment {a.id} (support-chatbot)" in one.output
    assert "1 of 19 required questions answered" in one.output

    answers = required_only()
    answers.pop("transparency")
    answers["vulnerable_people"] = None  # left for later in the file
    file = tmp_path / "answers.yaml"
    file.write_text(yaml.safe_dump(answers) + "personal_data: none\nhuman_oversight: no\n")
    refused = run_cli("impact", "answer", SYSTEM, "--file", str(file))
    assert refused.exit_code == 2
    assert "human_oversight: 'no' is not one of" in refused.output  # YAML `no` stays text
    file.write_text(yaml.safe_dump(answers) + "personal_data: none\n")
    filed = run_cli("impact", "answer", SYSTEM, "--file", str(file))
    assert filed.exit_code == 0, filed.output
    assert "still open: vulnerable_people, transparency" in filed.output

    last = run_cli(
        "impact", "answer", SYSTEM, "-q", "vulnerable_people", "-v", "no",
        "-q", "transparency", "-v", "A banner says it is an AI.", "--json",
    )  # fmt: skip
    assert last.exit_code == 0, last.output
    shown = json.loads(last.output)
    assert shown["missing_required"] == []
    assert shown["answers"]["vulnerable_people"] == "no"

    text = run_cli("impact", "show", SYSTEM)
    assert text.exit_code == 0, text.output
    assert f"impact assessment {a.id}: support-chatbot (limited risk), aims-impact@1" in text.output
    assert "19 of 19 required questions answered" in text.output
    markdown = run_cli("impact", "show", str(a.id), "--markdown")
    assert "> A banner says it is an AI." in markdown.output
    html = run_cli("impact", "show", str(a.id), "--html")
    assert html.output.startswith("<!DOCTYPE html>")
    listing = run_cli("impact", "list", "--json")
    assert [r["id"] for r in json.loads(listing.output)] == [a.id]

    for args, message in [
        (("impact", "show", "999"), "no impact assessment 999"),
        (("impact", "show", "credit-scoring"), "credit-scoring has no open impact assessment"),
        (("impact", "answer", SYSTEM, "-q", "a", "-q", "b", "-v", "1"), "one --value per"),
        (("impact", "answer", SYSTEM), "give --question ID --value VALUE or --file"),
        (("impact", "answer", SYSTEM, "--file", str(tmp_path / "none.yaml")), "no such file"),
        (("impact", "start", "nope"), "no AI system named 'nope'"),
        (("impact", "start", SYSTEM, "--assessor", f"nobody{D}"), "assessor: no person"),
    ]:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
