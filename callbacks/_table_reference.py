"""A view of a logged W&B table whose media point back to the logged files."""

from __future__ import annotations

from typing import Any

import wandb

from ktsweep.callbacks.compat.wandb import artifact_client_id, media_file_path, media_referencing


class TableReference(wandb.Table):
    """The rows of a table logged in an artifact, for other tables to reference.

    Media cells are copies that W&B serializes as references to the files already
    in the logged artifact, so a prediction table that reuses them uploads no
    media again. References use the artifact's client ID, which W&B resolves both
    online and when an offline run is synced. `get_index()` links rows to the
    logged table itself.
    """

    def __init__(self, table: wandb.Table, artifact: wandb.Artifact) -> None:
        rows = [[_reference(cell, artifact) for cell in row] for row in table.data]
        super().__init__(columns=list(table.columns), data=rows, allow_mixed_types=True)
        self._logged_table = table

    def get_index(self) -> list[Any]:
        return self._logged_table.get_index()


def _reference(cell: Any, artifact: wandb.Artifact) -> Any:
    if not isinstance(cell, wandb.data_types.Media) or not cell.file_is_set():
        return cell
    entry_name = artifact.get_added_local_path_name(media_file_path(cell))
    client_id = artifact_client_id(artifact)
    if entry_name is None or client_id is None:
        return cell  # unknown layout: the prediction table stores its own copy
    return media_referencing(cell, client_id, entry_name)
