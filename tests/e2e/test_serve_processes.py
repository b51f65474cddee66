"""`ktsweep serve` with two processes for real: both answer on one port, connections held open
end up even over them, a digits sweep runs through them, reports are counted across them, and
the follower ends with the leader."""

from __future__ import annotations

import collections
import os
import re
import signal

import httpx
import yaml

from ktsweep.client import Client
from tests.e2e.conftest import REPO, ServerProcess
from tests.waiting import wait_for


def test_two_processes_share_the_port_and_run_a_sweep(tmp_path):
    # Every epoch's report goes (none waits for its turn), so their number is known.
    server = ServerProcess(tmp_path, KTSWEEP_API_PROCESSES="2", KTSWEEP_REPORT_EVERY_S="0").start()
    try:
        # A fresh connection each time: the kernel spreads connections over both processes
        # (the follower answers once it has started, a few seconds after the leader).
        roles: dict[int, str] = {}

        def both_answered() -> bool:
            answer = httpx.get(f"{server.url}/healthz").json()
            roles[answer["pid"]] = answer["role"]
            return len(roles) >= 2

        assert wait_for(both_answered, timeout_s=120), roles
        assert sorted(roles.values()) == ["follower", "scheduler"], roles
        follower_pid = next(pid for pid, role in roles.items() if role == "follower")

        # Connections held open end up even over the two, wherever the kernel put them.
        clients = [httpx.Client(base_url=server.url) for _ in range(10)]
        try:
            pids = [c.get("/healthz").json()["pid"] for c in clients]
            assert sorted(collections.Counter(pids).values()) == [5, 5], pids
            assert [c.get("/healthz").json()["pid"] for c in clients] == pids  # keep-alive
        finally:
            for c in clients:
                c.close()

        spec = yaml.safe_load((REPO / "examples" / "digits" / "sweep.yaml").read_text())
        spec.update(name="two-processes", run_cap=4, parallelism=2)
        spec["trial"]["fit"]["epochs"] = 2
        with Client(server.url) as api:
            sweep = api.submit(spec)
            final = api.wait(sweep["id"], timeout_s=400)
            trials = api.trials(sweep["id"])
            histories = [api.trial(trial["id"])["history"] for trial in trials]
        assert final["state"] == "finished"
        assert [trial["state"] for trial in trials] == ["completed"] * 4
        assert [len(history) for history in histories] == [2] * 4

        # Every report counts once, whichever process took it (the scheduler serves /metrics):
        # one per epoch but the last, whose metrics come with the trial's result.
        metrics = httpx.get(f"{server.url}/metrics", headers=server.auth).text
        reports = float(re.search(r"^ktsweep_reports_total (\S+)$", metrics, re.M).group(1))
        assert reports == 4 * (2 - 1)

        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)

        def follower_gone() -> bool:
            # Gone, or a zombie waiting for init to reap it (its parent was killed).
            try:
                with open(f"/proc/{follower_pid}/stat") as file:
                    stat = file.read()
            except FileNotFoundError:
                return True
            return stat.rsplit(")", 1)[1].split()[0] == "Z"

        assert wait_for(follower_gone, timeout_s=30)
    finally:
        server.stop()
