"""What apply's and paste's reports share: counts by status and the failed items; the name and
statuses of apply's ``harmonize.json`` (used by the batch, which writes it, and by the merge of
``--shard`` parts)."""

from __future__ import annotations

from typing import List, Sequence

REPORT_NAME = "harmonize.json"
APPLY_STATUSES = ("done", "skipped", "failed", "interrupted")


class StatusCounts:
    """For a report whose ``items`` each have a ``status``: ``counts`` (one per ``STATUSES``)
    and ``failed`` (the items whose status is "failed")."""

    STATUSES: Sequence[str] = ()

    @property
    def items(self) -> list:
        raise NotImplementedError

    @property
    def counts(self) -> dict:
        return {status: sum(item.status == status for item in self.items) for status in self.STATUSES}

    @property
    def failed(self) -> List:
        return [item for item in self.items if item.status == "failed"]
