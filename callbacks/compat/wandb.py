"""The W&B internals the callbacks rely on (contract: tests/compat/test_wandb.py).

- `BatchPublisher` hands many history rows to W&B's service at once: `run.log` has no batch
  form, and one call per row costs most of per-batch logging.
- `media_file_path`, `artifact_client_id` and `media_referencing` let a prediction table point
  at the media files of a logged table, offline too: W&B's public way (`use_artifact(...).get`)
  needs the artifact uploaded first.
- `set_wandb_keras` puts back the `wandb.keras` module that wandb removed, for legacy scripts.
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import wandb

WANDB_KERAS = "wandb.keras"
_CLIENT_ARTIFACT_SCHEME = "wandb-client-artifact"


class Unsupported(Exception):
    """The run's internals are not what `BatchPublisher` expects; use `run.log`."""


class BatchPublisher:
    """Publishes several history rows to W&B's service with one hand-off to its I/O thread.

    Each row becomes the same partial-history record `run.log(row)` would publish (built by
    the run's own interface, so values are encoded exactly as `run.log` encodes them).
    `for_run` returns None where the run's internals are not what this expects.
    """

    def __init__(self, run: Any, interface: Any) -> None:
        # The request envelope W&B's service reads from its socket; no public module has it.
        from wandb.proto import wandb_server_pb2

        self._run = run
        self._interface = interface
        self._server_request = wandb_server_pb2.ServerRequest
        self._pending: list[Any] = []
        # A copy of the interface whose `_publish` collects records instead of sending them:
        # the only way to get the record `run.log` would send, encoded by W&B itself.
        self._collector = copy.copy(interface)
        self._collector._publish = self._collect

    @classmethod
    def for_run(cls, run: Any) -> BatchPublisher | None:
        # `_interface` is the run's link to W&B's service; `run.log` has no batch form.
        interface = getattr(run, "_interface", None)
        needed = ("_asyncer", "_client", "_assign", "publish_partial_history")
        if interface is None or not all(hasattr(interface, name) for name in needed):
            return None
        # `_local_step` is the step `run.log` gives the next row, which each row here takes.
        if not hasattr(run, "_local_step") or not hasattr(interface._client, "publish"):
            return None
        try:
            return cls(run, interface)
        except Exception:
            return None

    def publish(self, rows: list[dict[str, Any]]) -> None:
        # `_is_finished` is what `run.log` checks to refuse rows after `finish()`.
        if getattr(self._run, "_is_finished", False):
            raise RuntimeError(f"Run ({self._run.id}) is finished; metrics were not logged.")
        self._pending = []
        for row in rows:
            if any(not isinstance(key, str) for key in row):
                raise TypeError("Metric names logged to W&B must be strings.")
            self._collector.publish_partial_history(
                self._run,
                dict(row),
                user_step=self._run._local_step,
                # As `run.log`: TensorBoard sync, when patched in, owns the step.
                publish_step=len(wandb.patched["tensorboard"]) == 0,
            )
            self._run._local_step += 1  # as `run.log` without `step` or `commit`
        requests, self._pending = self._pending, []
        if len(requests) != len(rows):
            raise Unsupported()
        # The socket client and the I/O thread's scheduler behind `run.log`'s hand-off.
        client = self._interface._client

        async def send() -> None:
            for request in requests:
                await client.publish(request)

        asyncer = self._interface._asyncer
        # Queued behind anything published before and ahead of anything published after
        # (W&B's I/O thread writes its tasks in the order they were scheduled), so the
        # training thread need not wait for the socket writes.
        run_soon = getattr(asyncer, "run_soon", None)
        if run_soon is not None:
            run_soon(send)
        else:
            asyncer.run(send)

    def _collect(self, record: Any, *, nowait: bool = False) -> None:
        # `_assign` stamps the record with the stream's id, as `_publish` does before sending.
        self._interface._assign(record)
        request = self._server_request()
        request.record_publish.CopyFrom(record)
        self._pending.append(request)


def media_file_path(media: wandb.data_types.Media) -> str | None:
    """The local file a media object (`wandb.Image`, ...) was written to, or None."""
    # `_path` is where W&B keeps it: Media has no public accessor for its file.
    return media._path


def artifact_client_id(artifact: wandb.Artifact) -> str | None:
    """The ID W&B gives an artifact in this process, known before (and without) uploading."""
    # `_client_id` is what `wandb-client-artifact://` references resolve, online and at sync.
    return getattr(artifact, "_client_id", None)


def media_referencing(media: wandb.data_types.Media, client_id: str, entry_name: str) -> Any:
    """A copy of `media` that W&B serializes as a reference to `entry_name` of an artifact.

    Args:
        media: A media object whose file was added to the artifact.
        client_id: The artifact's `artifact_client_id`.
        entry_name: The file's name in the artifact (`artifact.get_added_local_path_name`).
    """
    reference = copy.copy(media)
    # A media object's source artifact is set once, through this private setter; serializing
    # into another artifact then adds a reference to the source's entry instead of the file.
    reference._artifact_source = None
    reference._set_artifact_source(
        _EntryReference(f"{_CLIENT_ARTIFACT_SCHEME}://{client_id}/{entry_name}")
    )
    return reference


class _EntryReference:
    """Stands in for the source artifact and its entry where W&B serializes media."""

    def __init__(self, url: str) -> None:
        self._url = url

    def _default_root(self) -> str:
        # Called by `Media.to_json` on a source artifact, to strip it from the entry name.
        return "\0"  # no media path starts with it, so W&B keeps its own entry name

    def get_entry(self, name: str) -> _EntryReference:
        return self

    def ref_url(self) -> str:
        return self._url


def set_wandb_keras(module: types.ModuleType | None) -> None:
    """Makes `module` importable as `wandb.keras` (and `wandb.keras` an attribute); None undoes."""
    # wandb removed its `wandb.keras` module; legacy scripts import their callbacks from it.
    if module is None:
        sys.modules.pop(WANDB_KERAS, None)
        if "keras" in vars(wandb):
            del wandb.keras
        return
    sys.modules[WANDB_KERAS] = module
    wandb.keras = module
