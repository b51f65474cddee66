"""A view of a logged W&B table whose media point back to the logged files."""

from __future__ import annotations

import copy
from typing import Any

import wandb

_CLIENT_ARTIFACT_SCHEME = "wandb-client-artifact"


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


class _EntryReference:
    """Stands in for the source artifact and its entry where W&B serializes media."""

    def __init__(self, url: str) -> None:
        self._url = url

    def _default_root(self) -> str:
        return "\0"  # no media path starts with it, so W&B keeps its own entry name

    def get_entry(self, name: str) -> _EntryReference:
        return self

    def ref_url(self) -> str:
        return self._url


def _reference(cell: Any, artifact: wandb.Artifact) -> Any:
    if not isinstance(cell, wandb.sdk.data_types.base_types.media.Media) or not cell.file_is_set():
        return cell
    entry_name = artifact.get_added_local_path_name(cell._path)
    client_id = getattr(artifact, "_client_id", None)
    if entry_name is None or client_id is None:
        return cell  # unknown layout: the prediction table stores its own copy
    reference = copy.copy(cell)
    reference._artifact_source = None
    reference._set_artifact_source(
        _EntryReference(f"{_CLIENT_ARTIFACT_SCHEME}://{client_id}/{entry_name}")
    )
    return reference
