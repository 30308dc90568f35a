"""`aims asks list/show/code`, `aims answer`: asks from the command line.

An ask is a question a run puts to people: an approval, or a typed answer form
(`aims_core/ask_forms.py`). The CLI is the channel for operators and for organisations without
Slack: it shows what each ask takes and records an answer through the same service (and the same
checks: eligibility, segregation of duties, training, once per person) as Slack and the Prefect
UI, then does what they do next (`approvals_cmd.answer_ask`, `follow_up`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

import typer
from pydantic import BaseModel

from aims_core.ask_forms import APPROVAL_KIND, FORM_TITLES, AnswerForm, answer_model
from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.messages import fmt_utc
from aims_core.services.approvals import ApprovalRequestOut

if TYPE_CHECKING:
    import yaml

app = typer.Typer(
    no_args_is_help=True,
    help="Asks: the questions runs put to people (approvals, confirmations, verifications).",
)


class FormField(BaseModel):
    """One field of an ask's answer form, as `aims answer --set` takes it."""

    name: str
    title: str
    type: str
    required: bool
    description: str = ""
    default: Any = None


class AskOut(ApprovalRequestOut):
    """An ask as the CLI shows it: the request, its kind's title and its form's fields."""

    kind_title: str
    answers: int
    form: list[FormField] | None = None


def _kind_title(kind: str) -> str:
    return FORM_TITLES.get(kind, kind)


def _out(r: ApprovalRequestOut, form: list[FormField] | None = None) -> AskOut:
    return AskOut(
        **r.model_dump(),
        kind_title=_kind_title(r.kind),
        answers=len(r.approvals) + len(r.answered_by),
        form=form,
    )


def _progress(a: AskOut) -> str:
    text = f"{a.answers}/{a.quorum}"
    return f"{text}, {len(a.rejections)} rejected" if a.rejections else text


def _when(value: datetime | None) -> str:
    return fmt_utc(value) if value is not None else "-"


# --- the answer form, described from its JSON schema --------------------------------------------


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """What a field takes, in words: `one of: a, b`, `yes/no`, `text (multiline, ≤ 3000)`."""
    if "$ref" in prop:
        return _type_of(defs.get(prop["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "enum" in prop:
        return "one of: " + ", ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return f"exactly: {prop['const']}"
    if "anyOf" in prop:
        kinds = [_type_of(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(kinds) + " (may be empty)"
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}), defs)} (repeat --set)"
    if kind == "boolean":
        return "yes/no"
    if kind in ("integer", "number"):
        bounds = [f"≥ {prop['minimum']}"] if "minimum" in prop else []
        bounds += [f"≤ {prop['maximum']}"] if "maximum" in prop else []
        return kind + (f" ({', '.join(bounds)})" if bounds else "")
    if kind == "string":
        if prop.get("format") in ("date", "date-time"):
            return "date (YYYY-MM-DD)" if prop["format"] == "date" else "date and time (ISO 8601)"
        notes = ["multiline"] if prop.get("multiline") else []
        notes += [f"≤ {prop['maxLength']} characters"] if "maxLength" in prop else []
        return "text" + (f" ({', '.join(notes)})" if notes else "")
    return str(kind or "value")


def form_fields(model: type[BaseModel]) -> list[FormField]:
    """The fields of an answer form: name, what it takes, whether it is required, its hint."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    defs = schema.get("$defs", {})
    return [
        FormField(
            name=name,
            title=prop.get("title", name),
            type=_type_of(prop, defs),
            required=name in required,
            description=prop.get("description", ""),
            default=None if name in required else prop.get("default"),
        )
        for name, prop in schema.get("properties", {}).items()
    ]


# --- commands ----------------------------------------------------------------------------------


@app.command("list")
def list_(
    mine: str | None = typer.Option(
        None, "--mine", metavar="EMAIL", help="Only asks this person may answer and has not yet."
    ),
    all_: bool = typer.Option(False, "--all", help="Every ask, not only the open ones."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List open asks (every ask with --all): what each asks, of whom, and by when."""
    from aims_core.models import ApprovalStatus
    from aims_core.services import approvals
    from aims_core.uow import UnitOfWork

    rows = [
        _out(r)
        for r in approvals.list_requests(
            UnitOfWork(),
            status=None if all_ else ApprovalStatus.open,
            approver=mine,
            undecided_only=mine is not None,
        )
    ]
    if as_json:
        print_json(rows)
        return
    scope = "all" if all_ else "open"
    print_table(
        f"Asks ({scope}{f', for {mine.strip().lower()}' if mine else ''}: {len(rows)})",
        ["id", "kind", "subject", "title", "status", "answers", "deadline", "who may answer"],
        [
            (
                a.id,
                a.kind_title,
                a.subject,
                a.title,
                a.status.value,
                _progress(a),
                _when(a.deadline),
                ", ".join(a.approvers),
            )
            for a in rows
        ],
    )


@app.command("show")
def show(
    ask_id: int = typer.Argument(..., metavar="ASK", help="The ask's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one ask: what it asks, who may answer (and who may not, and why), the answers so
    far, and the fields of its form (what `aims answer --set` takes)."""
    from aims_core.services import approvals
    from aims_core.settings import get_settings
    from aims_core.uow import UnitOfWork

    r = approvals.get_request(UnitOfWork(), ask_id)
    form = None if r.kind == APPROVAL_KIND else form_fields(answer_model(get_settings(), r.kind))
    a = _out(r, form)
    if as_json:
        print_json(a)
        return
    about = f"{a.subject} (activity {a.activity}" + (f", system {a.system})" if a.system else ")")
    lines = [
        f"ask {a.id}: {a.title}",
        f"  kind:           {a.kind_title} ({a.kind})",
        f"  subject:        {about}",
        f"  status:         {a.status.value}, {_progress(a)} answers, round {a.round}",
        f"  asked by:       {a.requester or a.requested_by}",
        f"  who may answer: {', '.join(a.approvers) or 'nobody'}",
    ]
    lines += [f"  may not answer: {email}: {why}" for email, why in a.excluded.items()]
    if a.requester:
        lines.append(f"  may not answer: {a.requester}: asked for it")
    lines += [
        f"  deadline:       {_when(a.deadline)}",
        f"  created:        {_when(a.created_at)}"
        + (f", closed {_when(a.decided_at)}" if a.decided_at else ""),
    ]
    if a.flow_run_id:
        pending = " (resume pending)" if a.resume_pending else ""
        lines.append(f"  flow run:       {a.flow_run_id}{pending}")
    typer.echo("\n".join(lines))
    if a.details:
        typer.echo("\n" + a.details)
    # Plain lines, not a table: a typed answer may be long, multiline text.
    typer.echo("\nanswers:" if a.decisions else "\nno answers yet")
    for d in a.decisions:
        typer.echo(
            f"  {d.person} ({d.name}): {d.outcome.value}, {_when(d.decided_at)}, round {d.round},"
            f" via {d.channel} ({d.actor})"
        )
        shown = {"comment": d.comment} if d.comment else {}
        for name, value in {**shown, **(d.answer or {})}.items():
            text = str(value).replace("\n", "\n      ")
            typer.echo(f"    {name}: {text}")
    if form is None:
        typer.echo(f"\nan approval: `aims approve {a.id} --as EMAIL` or `aims reject {a.id} ...`")
        return
    print_table(
        f"Form (aims answer {a.id} --as EMAIL --set FIELD=VALUE ...)",
        ["field", "takes", "required", "description"],
        [
            (
                f.name,
                f.type,
                "yes" if f.required else f"no (default {f.default!r})",
                f.description,
            )
            for f in form
        ],
    )


@app.command("code")
def code(
    ask_id: int = typer.Argument(..., metavar="ASK", help="The ask's id."),
    email: str = typer.Option(..., "--for", metavar="EMAIL", help="Whose code."),
) -> None:
    """Show a person's current personal code for an ask's Prefect UI form, to hand over where
    there is no Slack to send it. Audited. A code works once: after any UI form naming the
    person is read, it is dead and a new one applies (run this again)."""
    from aims_core.services import approvals
    from aims_core.uow import Actor, UnitOfWork

    who = email.strip().lower()
    value = approvals.hand_over_code(UnitOfWork(), ask_id, who, Actor.cli())
    typer.echo(value)
    typer.echo(f"(personal code of {who} for ask {ask_id}: works once, in the Prefect UI form)")


def answer_from_sets(model: type[AnswerForm], sets: list[str]) -> dict[str, Any]:
    """`--set field=value ...` as the form's answer: values stay text for the model to parse
    (pydantic turns `yes`/`no` into a bool, `2026-01-31` into a date); a list field collects
    its repeats."""
    fields = model.model_fields
    answer: dict[str, Any] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInput(f"'{item}' is not FIELD=VALUE", "set")
        if name not in fields:
            raise InvalidInput(
                f"unknown field '{name}' (this form's fields: {', '.join(fields)})", "set"
            )
        annotation = fields[name].annotation
        many = get_origin(annotation) is list or any(
            get_origin(arg) is list for arg in get_args(annotation)
        )
        if many:
            answer.setdefault(name, []).append(value)
        elif name in answer:
            raise InvalidInput(f"'{name}' is set twice (it takes one value)", "set")
        else:
            answer[name] = value
    return answer


def answer_from_file(
    model: type[AnswerForm], path: Path
) -> tuple[dict[str, Any], yaml.Node | None]:
    """An answers file: a YAML mapping of the form's fields, read by the rule files' loader (a
    key given twice is refused, not silently overwritten) with its node tree for line numbers."""
    import yaml

    from aims_core.rules.loading import line_of, load_located, syntax_problem

    try:
        data, root = load_located(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}", "file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", "file") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: {syntax_problem(exc)}", "file") from None
    fields = model.model_fields
    if not isinstance(data, dict) or not data:
        example = f"{next(iter(fields))}: ..." if fields else "field: value"
        raise InvalidInput(f"{path} must map the form's fields to answers (`{example}`)", "file")
    for key in data:
        if key not in fields:
            raise InvalidInput(
                f"{path} line {line_of(root, (str(key),))}: unknown field '{key}' "
                f"(this form's fields: {', '.join(fields)})",
                "file",
            )
    return {str(k): v for k, v in data.items()}, root


def answer(
    ask_id: int = typer.Argument(..., metavar="ASK", help="The ask's id (`aims asks list`)."),
    email: str = typer.Option(..., "--as", metavar="EMAIL", help="The person answering."),
    sets: list[str] = typer.Option(
        [], "--set", metavar="FIELD=VALUE", help="One field of the answer; repeat for each."
    ),
    file: Path | None = typer.Option(
        None, "--file", help="A YAML file mapping the form's fields to the answer."
    ),
) -> None:
    """Answer an ask on behalf of a person it was put to (recorded with your OS user); its
    fields: `aims asks show ASK`. Approvals: `aims approve` / `aims reject`."""
    from aims_core.cli.approvals_cmd import answer_ask
    from aims_core.rules.loading import line_of
    from aims_core.services import approvals
    from aims_core.settings import get_settings
    from aims_core.uow import UnitOfWork

    ask = approvals.get_request(UnitOfWork(), ask_id)
    if ask.kind == APPROVAL_KIND:
        raise InvalidInput(
            f"ask {ask_id} is an approval: `aims approve {ask_id} --as EMAIL` or "
            f"`aims reject {ask_id} --as EMAIL --comment WHY`",
            "ask",
        )
    if bool(sets) == (file is not None):
        raise InvalidInput("give the answer with --set FIELD=VALUE ... or with --file", "set")
    model = answer_model(get_settings(), ask.kind)
    root = None
    if file is not None:
        values, root = answer_from_file(model, file)
    else:
        values = answer_from_sets(model, sets)
    try:
        answer_ask(ask_id, email, values)
    except InvalidInput as exc:
        if file is None or exc.field not in values:
            raise
        where = f"{file} line {line_of(root, (exc.field,))}"
        raise InvalidInput(f"{exc.message} ({where})", exc.field) from None
