"""Slack modals for asks, built from the ask's typed answer model: Block Kit as plain dicts.

Pure functions of plain values, like `aims_core/messages.py`: no database, no slack_sdk. The
bridge opens these views (`views.open`) and reads a `view_submission` back with
`values_from_state`; the answer service validates the result with the same model, so a field's
rules live once, whatever the channel.

How a field of the answer model becomes an input block (block_id = the field's name, so an error
the service names by field lands on its block; the element's action_id is always `value`):

- `str` → `plain_text_input` (`multiline` when the field's `json_schema_extra` says
  `{"multiline": True}`); its `max_length` is passed, capped at Slack's 3,000.
- `Literal[...]` / an `Enum` → `static_select`; past 100 options, `external_select`, whose
  options the bridge serves from the same model (`block_suggestion` at the interactions URL,
  `options_for`).
- `bool` → a Yes / No `radio_buttons` (a required checkbox cannot say "no").
- `date` → `datepicker`, `datetime` → `datetimepicker`, `int` / `float` → `number_input` (with the
  field's bounds).
- `list[str]` → one multiline `plain_text_input`, one item per line (blank lines dropped);
  `list` of choices → `multi_static_select`.
- anything else (a nested model, a dict) is not askable in a modal: `InvalidInput` naming the field.

Labels are the field's `title` (else its name, humanised), hints its `description`; a field with
a default is `optional`. Slack's limits hold: at most 100 blocks (two are the ask's header and
context, so 98 fields); texts are clipped with an ellipsis (section 3,000, label and hint 2,000,
placeholder 150, modal title 24). A model with more fields than one modal holds is refused
(`ModalTooLarge`): a questionnaire longer than that is asked one section per modal, one ask each.

`private_metadata` carries the ask's id and round (JSON) and nothing else: the bridge re-reads the
ask from the database, and a modal opened for an earlier round is answered "moved on".
"""

from __future__ import annotations

import enum
import json
import types
from datetime import UTC, date, datetime
from typing import Any, Final, Literal, Protocol, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from aims_core.errors import InvalidInput
from aims_core.messages import SECTION_MAX, md_to_mrkdwn

__all__ = [
    "ANSWER_CALLBACK_ID",
    "REASON_BLOCK_ID",
    "REJECT_CALLBACK_ID",
    "VALUE_ACTION_ID",
    "AskLike",
    "ModalMeta",
    "ModalTooLarge",
    "answer_modal",
    "errors_for",
    "errors_from_validation",
    "notice_modal",
    "options_for",
    "read_meta",
    "reject_modal",
    "values_from_state",
]

ANSWER_CALLBACK_ID: Final = "aims_answer"
REJECT_CALLBACK_ID: Final = "aims_reject"
#: The reason block of the reject modal is named after `DecisionIn.comment`, the field it fills.
REASON_BLOCK_ID: Final = "comment"
VALUE_ACTION_ID: Final = "value"

# Slack's limits (Block Kit reference: modal view, input block, elements).
MAX_BLOCKS: Final = 100
TITLE_MAX: Final = 24
BUTTON_MAX: Final = 24
LABEL_MAX: Final = 2000
HINT_MAX: Final = 2000
PLACEHOLDER_MAX: Final = 150
INPUT_MAX: Final = 3000
OPTION_TEXT_MAX: Final = 75
OPTION_VALUE_MAX: Final = 150
STATIC_OPTIONS_MAX: Final = 100
METADATA_MAX: Final = 3000
#: The ask's own blocks before its fields: the question and its context line.
_HEAD_BLOCKS: Final = 2

Block = dict[str, Any]
View = dict[str, Any]


class AskLike(Protocol):
    """What a modal shows of an ask (`approvals.ApprovalRequestOut` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def round(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def details(self) -> str: ...


class ModalTooLarge(InvalidInput):
    """The model needs more blocks than one modal holds: ask it one section per modal."""


class ModalMeta(BaseModel):
    """The modal's `private_metadata`: which ask and round it answers."""

    request_id: int
    round: int


# --- text helpers ------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(text, limit)}


def humanise(name: str) -> str:
    """`root_cause` → `Root cause`."""
    words = name.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


# --- field shapes ------------------------------------------------------------------------------


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(get_args(annotation))
    return annotation, False


def _choices(annotation: Any) -> list[str] | None:
    """The values of a Literal or an Enum, as strings; None for any other type."""
    if get_origin(annotation) is Literal:
        return [str(a.value if isinstance(a, enum.Enum) else a) for a in get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    return None


def _meta(field: FieldInfo, kind: type) -> Any:
    return next((m for m in field.metadata if isinstance(m, kind)), None)


def _option(value: str) -> dict[str, Any]:
    return {"text": _plain(value, OPTION_TEXT_MAX), "value": value[:OPTION_VALUE_MAX]}


def _multiline(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("multiline"))


def _has_default(field: FieldInfo) -> bool:
    return not field.is_required()


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True) if _has_default(field) else None


def _element(name: str, field: FieldInfo) -> Block:
    """The input element of one field (see the module docstring for the rule per type)."""
    annotation, _ = _unwrap_optional(field.annotation)
    default = _default(field)
    choices = _choices(annotation)
    if choices is not None:
        return _select(choices, default, many=False)
    origin = get_origin(annotation)
    if origin in (list, set, frozenset, tuple):
        (item, *_rest) = get_args(annotation) or (str,)
        item_choices = _choices(_unwrap_optional(item)[0])
        if item_choices is not None:
            return _select(item_choices, default, many=True)
        if _unwrap_optional(item)[0] is str:
            el: Block = {"type": "plain_text_input", "multiline": True}
            if default:
                el["initial_value"] = _clip("\n".join(str(v) for v in default), INPUT_MAX)
            el["placeholder"] = _plain("One per line", PLACEHOLDER_MAX)
            return el
    if annotation is bool:
        yes, no = _option("Yes"), _option("No")
        yes["value"], no["value"] = "yes", "no"
        el = {"type": "radio_buttons", "options": [yes, no]}
        if isinstance(default, bool):
            el["initial_option"] = yes if default else no
        return el
    if annotation is datetime:
        el = {"type": "datetimepicker"}
        if isinstance(default, datetime):
            aware = default if default.tzinfo else default.replace(tzinfo=UTC)
            el["initial_date_time"] = int(aware.timestamp())
        return el
    if annotation is date:
        el = {"type": "datepicker"}
        if isinstance(default, date):
            el["initial_date"] = default.isoformat()
        return el
    if annotation in (int, float):
        el = {"type": "number_input", "is_decimal_allowed": annotation is float}
        low = _meta(field, Ge) or _meta(field, Gt)
        high = _meta(field, Le) or _meta(field, Lt)
        if low is not None:
            el["min_value"] = str(getattr(low, "ge", getattr(low, "gt", None)))
        if high is not None:
            el["max_value"] = str(getattr(high, "le", getattr(high, "lt", None)))
        if isinstance(default, int | float) and not isinstance(default, bool):
            el["initial_value"] = str(default)
        return el
    if annotation is str:
        el = {"type": "plain_text_input", "multiline": _multiline(field)}
        longest = _meta(field, MaxLen)
        el["max_length"] = min(longest.max_length, INPUT_MAX) if longest else INPUT_MAX
        shortest = _meta(field, MinLen)
        if shortest is not None and shortest.min_length > 0:
            el["min_length"] = min(shortest.min_length, el["max_length"])
        if isinstance(default, str) and default:
            el["initial_value"] = _clip(default, el["max_length"])
        return el
    raise InvalidInput(
        f"a field of type {getattr(annotation, '__name__', annotation)!s} cannot be asked in a "
        "Slack modal (text, choices, yes/no, dates, numbers and lists of them can)",
        name,
    )


def _select(choices: list[str], default: Any, *, many: bool) -> Block:
    if len(choices) > STATIC_OPTIONS_MAX:
        # Slack holds at most 100 static options: the rest are served as the person types
        # (block_suggestion, `options_for`); no initial option (it would have to be served too).
        kind = "multi_external_select" if many else "external_select"
        return {"type": kind, "min_query_length": 1}
    el: Block = {
        "type": "multi_static_select" if many else "static_select",
        "options": [_option(c) for c in choices],
    }
    chosen = [default] if not many else list(default or [])
    chosen_values = [str(c.value if isinstance(c, enum.Enum) else c) for c in chosen if c]
    initial = [_option(c) for c in choices if c in chosen_values]
    if initial and many:
        el["initial_options"] = initial
    elif initial:
        el["initial_option"] = initial[0]
    return el


def _input_block(name: str, field: FieldInfo) -> Block:
    element = {**_element(name, field), "action_id": VALUE_ACTION_ID}
    block: Block = {
        "type": "input",
        "block_id": name,
        "label": _plain(field.title or humanise(name), LABEL_MAX),
        "element": element,
        "optional": _has_default(field),
    }
    if field.description:
        block["hint"] = _plain(field.description, HINT_MAX)
    return block


# --- the views ---------------------------------------------------------------------------------


def _metadata(request: AskLike) -> str:
    return ModalMeta(request_id=request.id, round=request.round).model_dump_json()


def _head(request: AskLike, intro: str) -> list[Block]:
    text = f"*{md_to_mrkdwn(request.title)}*"
    if request.details.strip():
        text += "\n" + md_to_mrkdwn(request.details.strip())
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_MAX)}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _clip(f"{intro} · ask #{request.id}, round {request.round}", 2000),
                }
            ],
        },
    ]


def _view(callback_id: str, title: str, submit: str, blocks: list[Block], meta: str) -> View:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title, TITLE_MAX),
        "submit": _plain(submit, BUTTON_MAX),
        "close": _plain("Cancel", BUTTON_MAX),
        "private_metadata": meta,
        "blocks": blocks,
    }


def answer_modal(
    request: AskLike,
    model: type[BaseModel],
    *,
    form: str = "",
    title: str = "Answer",
    submit: str = "Submit",
) -> View:
    """The modal answering `request` with `model`'s fields, one input block each; `form` names
    the kind of answer in the context line (the modal's title holds only 24 characters).

    Raises `ModalTooLarge` past Slack's 100 blocks and `InvalidInput` (naming the field) for a
    field no modal element can carry."""
    fields = model.model_fields
    if len(fields) + _HEAD_BLOCKS > MAX_BLOCKS:
        raise ModalTooLarge(
            f"{model.__name__} has {len(fields)} fields; a Slack modal holds "
            f"{MAX_BLOCKS - _HEAD_BLOCKS}: ask it one section per modal",
            "model",
        )
    intro = f"{form} · " if form else ""
    blocks = _head(request, f"{intro}your answer is recorded under your name")
    blocks += [_input_block(name, field) for name, field in fields.items()]
    return _view(ANSWER_CALLBACK_ID, title, submit, blocks, _metadata(request))


def reject_modal(request: AskLike) -> View:
    """The modal asking why `request` is rejected: the reason is required and recorded."""
    reason: Block = {
        "type": "input",
        "block_id": REASON_BLOCK_ID,
        "label": _plain("Why do you reject it?", LABEL_MAX),
        "element": {
            "type": "plain_text_input",
            "action_id": VALUE_ACTION_ID,
            "multiline": True,
            "min_length": 1,
            "max_length": INPUT_MAX,
        },
        "hint": _plain("Recorded with your rejection and shown to the requester.", HINT_MAX),
        "optional": False,
    }
    blocks = [*_head(request, "A rejection needs a reason"), reason]
    return _view(REJECT_CALLBACK_ID, "Reject", "Reject", blocks, _metadata(request))


def notice_modal(title: str, text: str) -> View:
    """A view with a message and no submit button (what a `response_action: update` shows)."""
    return {
        "type": "modal",
        "title": _plain(title, TITLE_MAX),
        "close": _plain("Close", BUTTON_MAX),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 3000)}}],
    }


def read_meta(private_metadata: str | None) -> ModalMeta | None:
    """The ask and round a submitted modal answers, or None when it is not one of ours."""
    if not private_metadata or len(private_metadata) > METADATA_MAX:
        return None
    try:
        return ModalMeta.model_validate(json.loads(private_metadata))
    except (ValueError, ValidationError):
        return None


# --- reading a submission back -----------------------------------------------------------------


def _state_value(element: dict[str, Any]) -> Any:
    """What one element of `view.state.values` holds, as Slack shapes it per element type."""
    kind = element.get("type")
    if kind in ("static_select", "external_select", "radio_buttons"):
        option = element.get("selected_option")
        return option.get("value") if isinstance(option, dict) else None
    if kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        options = element.get("selected_options") or []
        return [o.get("value") for o in options if isinstance(o, dict)]
    if kind == "datepicker":
        return element.get("selected_date")
    if kind == "datetimepicker":
        stamp = element.get("selected_date_time")
        return datetime.fromtimestamp(int(stamp), UTC).isoformat() if stamp else None
    return element.get("value")


def values_from_state(model: type[BaseModel], state_values: dict[str, Any]) -> dict[str, Any]:
    """A `view_submission`'s `view.state.values` as the model's fields (block_id = field name).

    Only the model's fields are read; an empty input is left out, so the field's default
    applies, or the model says it is missing. Nothing is validated here: the model does that."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        block = state_values.get(name)
        element = block.get(VALUE_ACTION_ID) if isinstance(block, dict) else None
        if not isinstance(element, dict):
            continue
        value = _state_value(element)
        annotation, _ = _unwrap_optional(field.annotation)
        if annotation is bool and value in ("yes", "no"):
            value = value == "yes"
        elif get_origin(annotation) in (list, set, frozenset, tuple) and isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        if value is None or value == "":
            continue
        out[name] = value
    return out


def errors_for(field: str, message: str) -> dict[str, Any]:
    """Slack's inline error on one block: the modal stays open, the person fixes that field."""
    return {"response_action": "errors", "errors": {field: _clip(message, HINT_MAX)}}


def errors_from_validation(exc: ValidationError, blocks: list[str]) -> dict[str, Any]:
    """Every problem of a validation error on its block; a problem of the whole answer (no
    field) or of a field with no block goes on the first block, as Slack needs a block id."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        loc = err.get("loc", ())
        name = str(loc[0]) if loc else ""
        where = name if name in blocks else blocks[0]
        msg = "required" if err["type"] == "missing" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        errors.setdefault(where, _clip(msg, HINT_MAX))
    return {"response_action": "errors", "errors": errors}


def options_for(model: type[BaseModel], field: str, query: str) -> list[dict[str, Any]]:
    """The options of an `external_select` matching what the person typed (at most 100)."""
    info = model.model_fields.get(field)
    if info is None:
        return []
    annotation, _ = _unwrap_optional(info.annotation)
    if get_origin(annotation) in (list, set, frozenset, tuple):
        annotation = _unwrap_optional((get_args(annotation) or (str,))[0])[0]
    choices = _choices(annotation) or []
    needle = query.strip().lower()
    return [_option(c) for c in choices if needle in c.lower()][:STATIC_OPTIONS_MAX]
