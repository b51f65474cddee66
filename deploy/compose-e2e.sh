#!/usr/bin/env bash
# The compose stack, for real: build the images from a Debian base, validate docker-compose.yml,
# bring the stack up with podman-compose (two API replicas, two schedulers, two Ray workers), run a
# small digits sweep through the API from the host, SIGKILL the active scheduler's container
# mid-sweep, check that the other scheduler takes over (as /readyz says) and the sweep still ends
# with every trial completed, on more than one Ray node, with its rows in the containerised
# PostgreSQL; tear down.
#
# For machines with podman but no Docker engine and no image registry (the CI machines). Run from
# anywhere as root:  bash deploy/compose-e2e.sh
#
# Cached between runs under KTSWEEP_CI_CACHE (default ~/.cache/ktsweep-ci): the debootstrapped
# base image (a tarball), the wheels of the image's dependencies, and the podman-compose tool.
# Settings: KTSWEEP_E2E_PORT (host port for the API, default 18000), KTSWEEP_E2E_KEEP=1 (leave
# the stack up on failure, for debugging).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KTSWEEP_CI_CACHE:-$HOME/.cache/ktsweep-ci}"
port="${KTSWEEP_E2E_PORT:-18000}"
project="ktsweep-e2e"
podman_compose_version="1.6.0"
compose_files=(-f "$repo/docker-compose.yml" -f "$repo/deploy/compose.local.yml")
work="$(mktemp -d)"
started_at=$SECONDS
phase_name=""
phase_started=0
timings=()

phase() {
    end_phase
    phase_name="$1"
    phase_started=$SECONDS
    echo "==> $phase_name"
}

end_phase() {
    if [ -n "$phase_name" ]; then
        timings+=("$(printf '%-28s %5d s' "$phase_name" $((SECONDS - phase_started)))")
        phase_name=""
    fi
}

fail() {
    echo "compose-e2e: FAILED: $*" >&2
    exit 1
}

report_timings() {
    end_phase
    echo "--- phase times"
    printf '%s\n' "${timings[@]}"
    printf '%-28s %5d s\n' "total" $((SECONDS - started_at))
}

remove_stack() {
    # podman-compose's `down` knows one container per service, not the ones --scale added: remove
    # every container of the project first, then the pod, volumes and network.
    local ids
    ids="$(podman ps -aq --filter "label=com.docker.compose.project=$project")"
    if [ -n "$ids" ]; then
        podman rm -f -t 5 $ids >/dev/null 2>&1 || true
    fi
    "$podman_compose" -p "$project" "${compose_files[@]}" down -v -t 5 >/dev/null 2>&1 || true
    podman pod rm -f "pod_$project" >/dev/null 2>&1 || true
    ids="$(podman volume ls -q --filter "label=com.docker.compose.project=$project")"
    if [ -n "$ids" ]; then
        podman volume rm -f $ids >/dev/null 2>&1 || true
    fi
    podman network rm -f "${project}_default" >/dev/null 2>&1 || true
    if [ -n "$(podman ps -aq --filter "label=com.docker.compose.project=$project")" ]; then
        echo "compose-e2e: some containers of $project could not be removed:" >&2
        podman ps -a --filter "label=com.docker.compose.project=$project" >&2
    fi
    return 0
}

teardown() {
    status=$?
    set +e
    if [ "$status" -ne 0 ] && [ -n "${stack_up:-}" ]; then
        echo "--- last log lines of each container (the run failed)"
        for name in $(podman ps -a --filter "label=com.docker.compose.project=$project" \
            --format '{{.Names}}'); do
            echo "----- $name"
            podman logs --tail 40 "$name" 2>&1
        done
    fi
    if [ -n "${stack_up:-}" ] && { [ "$status" -eq 0 ] || [ "${KTSWEEP_E2E_KEEP:-0}" != "1" ]; }; then
        phase "tear down"
        remove_stack
    fi
    report_timings
    rm -rf "$work"
    if [ "$status" -eq 0 ]; then
        echo "compose-e2e: OK"
    fi
    exit "$status"
}
trap teardown EXIT
# Interrupted: fail (the EXIT trap then tears down), never report success.
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------------------------
phase "tools"
missing=()
for tool in podman debootstrap runc docker-compose curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap runc curl >/dev/null
    # Only to validate the compose file: without its recommended Docker engine.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose \
        >/dev/null
fi
# Debian's podman-compose (1.0) ignores profiles and --scale; a pinned newer one lives in the cache,
# with httpx for the host-side client.
tools="$cache/tools-$podman_compose_version"
if [ ! -x "$tools/bin/podman-compose" ] || [ ! -x "$tools/bin/python" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet "podman-compose==$podman_compose_version" httpx \
        >"$work/pip-tools.log" 2>&1 || {
        cat "$work/pip-tools.log"
        fail "could not install podman-compose $podman_compose_version (log above)"
    }
fi
podman_compose="$tools/bin/podman-compose"
python="$tools/bin/python"
export CONTAINERS_CONF="$repo/deploy/podman-containers.conf"
mkdir -p "$cache"

# ------------------------------------------------------------------------------------------------
phase "base image"
if ! podman image exists localhost/debian:bookworm; then
    if [ ! -s "$cache/debian-bookworm.tar" ]; then
        debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian \
            >"$work/debootstrap.log" 2>&1 || {
            tail -20 "$work/debootstrap.log"
            fail "debootstrap of Debian bookworm failed (log above)"
        }
        rm -f "$work"/rootfs/var/cache/apt/archives/*.deb
        tar -C "$work/rootfs" -c . >"$cache/debian-bookworm.tar.part"
        mv "$cache/debian-bookworm.tar.part" "$cache/debian-bookworm.tar"
        rm -rf "$work/rootfs"
    fi
    podman import "$cache/debian-bookworm.tar" localhost/debian:bookworm >/dev/null 2>&1 ||
        fail "podman could not import the base image from $cache/debian-bookworm.tar"
fi

# ------------------------------------------------------------------------------------------------
phase "wheels"
# The image's Python is Debian bookworm's 3.11, and so must be the Python that picks the wheels.
python3 -c 'import sys; assert sys.version_info[:2] == (3, 11)' ||
    fail "the wheels are chosen by the host's python3, which must be 3.11 like the image's"
# What deploy/Dockerfile installs: pyproject.toml's requirements with the CPU-only TensorFlow,
# through constraints.txt.
python3 "$repo/deploy/requirements.py" tensorflow-cpu >"$work/requirements.txt"
stamp="$(cat "$work/requirements.txt" "$repo/constraints.txt" | sha256sum | cut -c1-16)"
if [ "$(cat "$cache/wheels/.stamp" 2>/dev/null)" != "$stamp" ]; then
    mkdir -p "$cache/wheels"
    "$tools/bin/pip" wheel --quiet --wheel-dir "$cache/wheels" -r "$work/requirements.txt" \
        -c "$repo/constraints.txt" pip "setuptools>=69" wheel >"$work/pip-wheel.log" 2>&1 || {
        grep -v "^WARNING: Location" "$work/pip-wheel.log" | tail -20
        fail "could not fetch the wheels of the image's dependencies (log above)"
    }
    echo "$stamp" >"$cache/wheels/.stamp"
fi

# ------------------------------------------------------------------------------------------------
phase "build images"
build() { # build IMAGE_NAME [ARGS...]: the log is shown only when the build fails
    local image="$1"
    shift
    podman build --build-arg BASE_IMAGE=localhost/debian:bookworm -t "$image" "$@" \
        >"$work/build.log" 2>&1 || {
        tail -40 "$work/build.log"
        fail "the image $image did not build (log above)"
    }
}
build localhost/ktsweep-postgres:15 -f "$repo/deploy/postgres/Dockerfile" "$repo/deploy/postgres"
build localhost/ktsweep:ci --build-arg PIP_FIND_LINKS=/wheels -v "$cache/wheels:/wheels:ro" \
    -f "$repo/deploy/Dockerfile" "$repo"

# ------------------------------------------------------------------------------------------------
phase "validate compose file"
export KTSWEEP_API_TOKENS="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export RAY_AUTH_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KTSWEEP_PORT="$port"
export RAY_WORKER_CPUS=1 # one trial per worker node: two at once need both nodes
export KTSWEEP_CHECKPOINT_EVERY_S=0 # a checkpoint every epoch: the takeover resumes from one
export WANDB_MODE=offline
for profile in "" gpu wandb; do
    docker-compose -f "$repo/docker-compose.yml" ${profile:+--profile "$profile"} config -q ||
        fail "docker-compose.yml does not validate (profile '${profile:-default}')"
done
docker-compose "${compose_files[@]}" config -q || fail "deploy/compose.local.yml does not validate"

# ------------------------------------------------------------------------------------------------
phase "compose up"
remove_stack # what an interrupted earlier run may have left
stack_up=1
# podman-compose applies one --scale to every service, overriding the compose file's
# `deploy.replicas` (the two schedulers): bring the stack up as the file says, then add the
# second Ray worker alone.
"$podman_compose" -p "$project" "${compose_files[@]}" up -d --no-build >"$work/up.log" 2>&1 || {
    tail -30 "$work/up.log"
    fail "podman-compose up failed (log above)"
}
"$podman_compose" -p "$project" "${compose_files[@]}" up -d --no-build --no-deps \
    --scale ray-worker=2 ray-worker >"$work/up.log" 2>&1 || {
    tail -30 "$work/up.log"
    fail "podman-compose up --scale ray-worker=2 failed (log above)"
}

containers() { # the names of a service's containers
    podman ps --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}'
}

# ------------------------------------------------------------------------------------------------
phase "wait for /readyz"
# Ready once the database answers and one of the two schedulers is active.
deadline=$((SECONDS + 300))
until curl -fsS "http://127.0.0.1:$port/readyz" >"$work/readyz.json" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the API did not answer /readyz on port $port in 5 min"
    sleep 2
done
postgres="$(containers postgres | head -1)"
api_2="$(containers api-2 | head -1)"
[ -n "$api_2" ] || fail "no api-2 container is running"
for service in ray-worker scheduler; do
    count="$(containers "$service" | wc -l)"
    [ "$count" -eq 2 ] || fail "expected 2 $service containers, found $count"
done
# Each scheduler container by its host name, which is what /readyz names.
: >"$work/schedulers.txt"
for name in $(containers scheduler); do
    echo "$(podman inspect --format '{{.Config.Hostname}}' "$name") $name" >>"$work/schedulers.txt"
done

# ------------------------------------------------------------------------------------------------
phase "healthchecks"
# Podman runs healthchecks from systemd timers, absent here: run each service's check once.
for name in $(podman ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}}'); do
    for attempt in $(seq 30); do
        podman healthcheck run "$name" >/dev/null 2>&1 && break
        [ "$attempt" -lt 30 ] || fail "the healthcheck of $name does not pass"
        sleep 2
    done
done

# ------------------------------------------------------------------------------------------------
phase "API replicas"
# Both replicas answer, each from KTSWEEP_API_WORKERS (2) processes, and name the same active
# scheduler, one of the two scheduler containers. api-2 publishes no port: ask it from inside.
podman exec "$api_2" curl -fsS -H "Authorization: Bearer $KTSWEEP_API_TOKENS" \
    http://localhost:8000/readyz >"$work/readyz-2.json" ||
    fail "api-2 did not answer /readyz"
"$python" - "$port" "$KTSWEEP_API_TOKENS" "$work/readyz-2.json" "$work/schedulers.txt" <<'PY' ||
import json
import sys
import time

import httpx

port, token, other_path, schedulers_path = sys.argv[1:]
hosts = dict(line.split() for line in open(schedulers_path))
auth = {"Authorization": f"Bearer {token}"}
active = httpx.get(f"http://127.0.0.1:{port}/readyz", headers=auth).json()["scheduler"]
other = json.load(open(other_path))["scheduler"]
print(f"active scheduler, as api names it: {active}; as api-2 names it: {other}")
if active != other or active["host"] not in hosts:
    sys.exit("the replicas do not name the same active scheduler, one of the scheduler containers")
pids = {}
deadline = time.monotonic() + 60
while len(pids) < 2 and time.monotonic() < deadline:
    answer = httpx.get(f"http://127.0.0.1:{port}/healthz").json()  # a new connection each time
    pids[answer["pid"]] = answer["role"]
print(f"processes of api that answered /healthz: {pids}")
sys.exit(0 if len(pids) == 2 and set(pids.values()) == {"api"} else 1)
PY
    fail "the API replicas did not answer as expected (above)"

# ------------------------------------------------------------------------------------------------
phase "sweep, kill a scheduler"

cat >"$work/sweep.yaml" <<'YAML'
name: compose-e2e-digits
method: random
metric: {name: val_accuracy, goal: maximize}
parameters:
  units: {values: [16, 32]}
  learning_rate: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-2}
run_cap: 6
parallelism: 2
trial:
  hypermodel: ktsweep.examples.digits:build_model
  data: ktsweep.examples.digits:load_data
  # Enough epochs that a trial runs with a checkpoint for several of the script's polls (a
  # 3-epoch trial could end between two polls on an idle machine, and the sweep with it).
  fit: {epochs: 10, batch_size: 32}
  resources: {cpu: 1}
wandb: {project: ktsweep-compose-e2e, mode: offline}
YAML

# Submit; once a trial has completed and another has checkpointed an epoch, SIGKILL the active
# scheduler's container; the other scheduler must take over (as /readyz says) and the sweep end
# with exactly run_cap trials, every one completed.
"$python" - "$port" "$KTSWEEP_API_TOKENS" "$work/sweep.yaml" "$work/schedulers.txt" \
    >"$work/sweep.json" <<'PY' ||
import json
import subprocess
import sys
import time

import httpx

port, token, spec_path, schedulers_path = sys.argv[1:]
hosts = dict(line.split() for line in open(schedulers_path))
log = sys.stderr.write
with httpx.Client(
    base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
) as http:

    def trials(sweep_id):
        return http.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 500}).json()["items"]

    killed = http.get("/readyz").json()["scheduler"]
    answer = http.post(
        "/api/v1/sweeps",
        content=open(spec_path).read(),
        headers={"Content-Type": "application/yaml"},
    )
    if answer.status_code != 201:
        sys.exit(f"submitting the sweep: HTTP {answer.status_code}: {answer.text}")
    sweep = answer.json()
    deadline = time.monotonic() + 600
    while True:
        states = [(t["state"], t["checkpoint"]) for t in trials(sweep["id"])]
        if any(s == "completed" for s, _ in states) and any(
            s == "running" and checkpoint for s, checkpoint in states
        ):
            break
        sweep = http.get(f"/api/v1/sweeps/{sweep['id']}").json()
        if sweep["state"] != "running" or time.monotonic() > deadline:
            sys.exit(f"the sweep ended ({sweep['state']}) before the scheduler could be killed")
        time.sleep(0.5)
    container = hosts[killed["host"]]
    log(f"trials before the kill: {[s for s, _ in states]}\n")
    log(f"killing the active scheduler {killed} (container {container}) with SIGKILL\n")
    # (podman prints the container's name: not on this script's stdout, which is the JSON)
    subprocess.run(
        ["podman", "kill", "--signal", "KILL", container], check=True, stdout=subprocess.DEVNULL
    )
    killed_at = time.monotonic()
    deadline = killed_at + 45
    while True:
        answer = http.get("/readyz")
        active = answer.json().get("scheduler") if answer.status_code == 200 else None
        if active and active["host"] != killed["host"] and active["host"] in hosts:
            break
        if time.monotonic() > deadline:
            sys.exit(f"no other scheduler took over within 45 s: /readyz answers {answer.text}")
        time.sleep(0.5)
    takeover_s = time.monotonic() - killed_at
    log(f"{active} ({hosts[active['host']]}) took over {takeover_s:.1f} s after the kill\n")
    deadline = time.monotonic() + 900
    while sweep["state"] == "running" and time.monotonic() < deadline:
        time.sleep(2)
        sweep = http.get(f"/api/v1/sweeps/{sweep['id']}").json()
    final = trials(sweep["id"])
print(
    json.dumps(
        {
            "id": sweep["id"],
            "state": sweep["state"],
            "trials": final,
            "killed": killed,
            "active": active,
            "takeover_s": takeover_s,
        }
    )
)
PY
    fail "the sweep could not be run through the API: $(cat "$work/sweep.json")"
"$python" - "$work/sweep.json" <<'PY' || fail "the sweep did not finish as expected (above)"
import json
import sys

sweep = json.load(open(sys.argv[1]))
print(f"the active scheduler took over {sweep['takeover_s']:.1f} s after the kill (target 15 s)")
states = [trial["state"] for trial in sweep["trials"]]
print(f"sweep {sweep['id']}: {sweep['state']}, trials: {states}")
for trial in sweep["trials"]:
    print(f"trial {trial['id']}: {trial['state']}, attempts {trial['attempts']}")
    if trial["state"] != "completed":
        print(f"  {trial.get('error')}")
ok = sweep["state"] == "finished" and len(states) == 6 and set(states) == {"completed"}
sys.exit(0 if ok else 1)
PY

# ------------------------------------------------------------------------------------------------
phase "checks"
"$python" - "$work/sweep.json" <<'PY' || fail "the trials did not run on more than one Ray node"
import json
import sys

trials = json.load(open(sys.argv[1]))["trials"]
nodes = {trial["node"]["id"]: trial["node"] for trial in trials if trial.get("node")}
for trial in trials:
    node = trial.get("node") or {}
    print(f"trial {trial['id']}: node {node.get('hostname')} ({node.get('ip')})")
print(f"Ray nodes that ran trials (as the trials record them): {len(nodes)}")
sys.exit(0 if len(nodes) >= 2 and all(trial.get("node") for trial in trials) else 1)
PY
# The replica without a published port names the new active scheduler too.
podman exec "$api_2" curl -fsS -H "Authorization: Bearer $KTSWEEP_API_TOKENS" \
    http://localhost:8000/readyz >"$work/readyz-2.json" ||
    fail "api-2 did not answer /readyz after the takeover"
"$python" - "$work/sweep.json" "$work/readyz-2.json" <<'PY' ||
import json
import sys

active = json.load(open(sys.argv[1]))["active"]
named = json.load(open(sys.argv[2]))["scheduler"]
print(f"api-2 names the active scheduler: {named}")
sys.exit(0 if named == active else 1)
PY
    fail "api-2 does not name the scheduler that took over"
sweep_id="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/sweep.json")"
rows="$(podman exec "$postgres" psql -U ktsweep -d ktsweep -tAc \
    "select count(*) from trials where sweep_id = '$sweep_id' and state = 'completed'")" ||
    fail "could not query the containerised PostgreSQL"
echo "PostgreSQL: $rows completed trials of sweep $sweep_id in table trials"
[ "$rows" -eq 6 ] || fail "expected 6 completed trial rows in PostgreSQL, found '$rows'"
nodes="$(podman exec "$postgres" psql -U ktsweep -d ktsweep -tAc \
    "select count(distinct node->>'id') from trials where sweep_id = '$sweep_id'")" ||
    fail "could not query the containerised PostgreSQL"
echo "PostgreSQL: the trials of sweep $sweep_id ran on $nodes Ray nodes (column trials.node)"
[ "$nodes" -ge 2 ] || fail "expected the trial rows to name at least 2 Ray nodes, found '$nodes'"
