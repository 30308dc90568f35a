"""People: who may approve, own, audit and respond, and how that changes as people come and go.

`records` (look-ups every service uses, add, list), `lifecycle` (update, show, reactivate, when
and why someone was deactivated), `holdings` (what a person owns or may decide), `importing`
(a people file), `slack_identities` (Slack ids found by email). Deactivating someone is
`aims_core.services.leavers`: it moves work the approval, CAPA and audit services own, and
those import this package.

This module only re-exports what callers use.
"""

from aims_core.services.people.holdings import Held, held_by
from aims_core.services.people.importing import IMPORT_COLUMNS, REQUIRED_COLUMNS, import_people
from aims_core.services.people.lifecycle import (
    deactivation_of,
    deactivation_text,
    person_subject,
    reactivate_person,
    show_person,
    update_person,
)
from aims_core.services.people.records import (
    active_person,
    add_person,
    get_person,
    list_people,
    person_out,
    persons_by_email,
    resolve_roles,
)
from aims_core.services.people.schemas import (
    CLEAR,
    Deactivation,
    DeactivationIn,
    Holding,
    LinkReport,
    LookupFailed,
    PersonDetail,
    PersonImportRow,
    PersonUpdate,
    SlackUser,
)
from aims_core.services.people.slack_identities import (
    Lookup,
    link_from_slack_profile,
    link_slack_ids,
)

__all__ = [
    "CLEAR",
    "IMPORT_COLUMNS",
    "REQUIRED_COLUMNS",
    "Deactivation",
    "DeactivationIn",
    "Held",
    "Holding",
    "LinkReport",
    "Lookup",
    "LookupFailed",
    "PersonDetail",
    "PersonImportRow",
    "PersonUpdate",
    "SlackUser",
    "active_person",
    "add_person",
    "deactivation_of",
    "deactivation_text",
    "get_person",
    "held_by",
    "import_people",
    "link_from_slack_profile",
    "link_slack_ids",
    "list_people",
    "person_out",
    "person_subject",
    "persons_by_email",
    "reactivate_person",
    "resolve_roles",
    "show_person",
    "update_person",
]
