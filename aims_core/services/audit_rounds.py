"""Which report round an audit is in, read in a unit of work of its own.

The internal-audit flow keys its report tasks and waits by the round (a rejected report is
written and asked anew under new keys); it reads the round here rather than opening a session.
"""

from __future__ import annotations

from aims_core.services.audits import report_round
from aims_core.uow import UnitOfWork


def current_report_round(uow: UnitOfWork, audit_id: int) -> int:
    """1 + the report approvals of the audit already refused."""
    with uow.read():
        return report_round(uow.session, audit_id)
