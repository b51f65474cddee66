"""A local HTTP endpoint that answers what `wandb sync` sends a W&B server, and records it.

W&B's servers cannot be reached from the tests, so `ktsweep sync` is checked against this
endpoint given as `WANDB_BASE_URL` (as a self-hosted W&B server is). The real `wandb` client
does the upload: it creates each run (GraphQL `UpsertBucket`), streams its history and summary
(`/files/<entity>/<project>/<run>/file_stream`), uploads its files (`CreateRunFiles`, then
a PUT to each upload URL) and its artifacts (`CreateArtifact`, `CreateArtifactFiles`, a PUT
per file, the manifest, `CommitArtifact`). wandb's public API (`wandb.Api`) then checks its
credentials (`Viewer`), finds the default entity (`GetDefaultEntity`), loads an uploaded run
(`Run`) and changes its tags (`UpsertBucket` by the run's storage id). The endpoint answers
just enough for all that to succeed, keeps each uploaded run's tags, and keeps every request,
so a test can check what reached the server.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WandbEndpoint:
    """Serves on 127.0.0.1 (a free port) until closed; `requests` holds what came in.

    Each request is `{"method", "path", "operation" (GraphQL), "variables", "body"}`.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.tags: dict[str, list[str]] = {}  # by run id (name), once uploaded
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                endpoint._handle(self, "POST")

            def do_PUT(self):
                endpoint._handle(self, "PUT")

            def do_GET(self):
                endpoint._handle(self, "GET")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that hung up
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WandbEndpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def graphql(self, operation: str) -> list[dict[str, Any]]:
        """The variables of every GraphQL request named `operation`."""
        with self._lock:
            return [r["variables"] for r in self.requests if r.get("operation") == operation]

    def streamed(self, run_id: str) -> list[dict[str, Any]]:
        """The file-stream bodies sent for run `run_id`."""
        with self._lock:
            return [
                r["body"]
                for r in self.requests
                if r["path"].endswith(f"/{run_id}/file_stream") and isinstance(r["body"], dict)
            ]

    def uploaded(self, prefix: str) -> dict[str, int]:
        """Path -> size of every file uploaded (PUT) under `/upload/<prefix>`."""
        with self._lock:
            return {
                r["path"]: len(r["body"])
                for r in self.requests
                if r["method"] == "PUT" and r["path"].startswith(f"/upload/{prefix}")
            }

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raw = _read_body(handler)
        record: dict[str, Any] = {"method": method, "path": handler.path, "body": raw}
        answer: Any = {}
        status = 200
        if method == "POST" and handler.path.startswith("/graphql"):
            request = json.loads(raw or b"{}")
            found = re.search(r"(?:mutation|query)\s+(\w+)", request.get("query", ""))
            record["operation"] = found.group(1) if found else None
            record["variables"] = request.get("variables") or {}
            answer = self._graphql_answer(record["operation"], record["variables"])
        elif "file_stream" in handler.path:
            record["body"] = json.loads(raw or b"{}")
            answer = {"exitcode": None, "limits": {}}
        elif method == "GET":
            status = 404
        with self._lock:
            self.requests.append(record)
        body = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _graphql_answer(self, operation: str | None, variables: dict[str, Any]) -> dict:
        if operation == "Viewer":  # the public API checks its credentials with it
            viewer = {"id": "viewer", "entity": "local", "username": "local", "email": None}
            return {"data": {"viewer": {**viewer, "flags": "{}", "teams": {"edges": []}}}}
        if operation == "GetDefaultEntity":
            return {"data": {"viewer": {"id": "viewer", "entity": "local"}}}
        if operation == "Run":
            return {"data": {"project": {"run": self._run(variables.get("name"))}}}
        if operation == "UpsertBucket" and str(variables.get("id") or "").startswith("run-"):
            name = variables["id"].removeprefix("run-")  # an update of a run, by storage id
            with self._lock:
                if variables.get("tags") is not None:
                    self.tags[name] = list(variables["tags"])
            return {"data": {"upsertBucket": {"bucket": self._run(name), "inserted": False}}}
        if operation == "UpsertBucket":
            project = variables.get("project") or "uncategorized"
            entity = variables.get("entity") or "local"
            bucket = {
                "id": "run-" + str(variables.get("name")),
                "name": variables.get("name"),
                "displayName": variables.get("displayName") or variables.get("name"),
                "description": "",
                "config": "{}",
                "sweepName": None,
                "historyLineCount": 0,
                "eventsLineCount": 0,
                "summaryMetrics": "{}",
                "project": {
                    "id": project,
                    "name": project,
                    "entity": {"id": entity, "name": entity},
                },
            }
            with self._lock:
                self.tags.setdefault(str(variables.get("name")), list(variables.get("tags") or []))
            return {"data": {"upsertBucket": {"bucket": bucket, "inserted": True}}}
        if operation == "CreateRunFiles":
            files = [
                {"name": name, "uploadUrl": f"{self.url}/upload/{variables.get('run')}/{name}"}
                for name in variables.get("files") or []
            ]
            created = {"runID": "run", "uploadHeaders": [], "files": files}
            return {"data": {"createRunFiles": created}}
        if operation == "ServerFeaturesQuery":
            return {"data": {"serverInfo": {"features": []}}}
        if operation == "CreateArtifact":
            artifact = {
                "id": f"{variables['input'].get('artifactCollectionName')}-{len(self.requests)}",
                "state": "PENDING",
                "artifactSequence": {"latestArtifact": None},
            }
            return {"data": {"createArtifact": {"artifact": artifact}}}
        if operation == "CreateArtifactManifest":
            manifest = {
                "id": f"manifest-{variables.get('artifactID')}",
                "file": {
                    "id": f"manifest-file-{variables.get('artifactID')}",
                    "uploadUrl": f"{self.url}/upload/manifests/{variables.get('artifactID')}",
                    "uploadHeaders": [],
                },
            }
            return {"data": {"createArtifactManifest": {"artifactManifest": manifest}}}
        if operation == "CreateArtifactFiles":
            edges = [
                {
                    "node": {
                        "storagePath": f"artifacts/{file['artifactID']}/{file['name']}",
                        "uploadUrl": f"{self.url}/upload/artifacts/{file['artifactID']}/"
                        f"{file['name']}",
                        "uploadHeaders": [],
                        "uploadMultipartUrls": None,
                        "artifact": {"id": file["artifactID"]},
                    }
                }
                for file in variables["input"]["artifactFiles"]
            ]
            return {"data": {"createArtifactFiles": {"files": {"edges": edges}}}}
        if operation == "CommitArtifact":
            committed = {"id": variables.get("artifactID"), "digest": "committed"}
            return {"data": {"commitArtifact": {"artifact": committed}}}
        return {"data": {}}

    def _run(self, name: str | None) -> dict[str, Any] | None:
        """An uploaded run as the public API's `RunFragment` reads it; None if not uploaded."""
        with self._lock:
            if name not in self.tags:
                return None
            tags = list(self.tags[name])
        return {
            "projectId": 1,
            "id": f"run-{name}",
            "tags": tags,
            "name": name,
            "displayName": name,
            "sweepName": None,
            "state": "finished",
            "config": "{}",
            "group": None,
            "jobType": None,
            "commit": None,
            "readOnly": False,
            "createdAt": "2026-01-01T00:00:00",
            "heartbeatAt": "2026-01-01T00:00:00",
            "description": "",
            "notes": None,
            "systemMetrics": "{}",
            "summaryMetrics": "{}",
            "historyLineCount": 0,
            "user": {"name": "local", "username": "local"},
            "historyKeys": None,
        }


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
