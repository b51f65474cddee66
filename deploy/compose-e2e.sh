#!/usr/bin/env bash
# The compose stack, for real: build the images from a Debian base, validate docker-compose.yml,
# bring the stack up with podman-compose, run a small digits sweep through the API from the host,
# check it ran on more than one Ray node with its rows in the containerised PostgreSQL, tear down.
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
"$podman_compose" -p "$project" "${compose_files[@]}" up -d --no-build --scale ray-worker=2 \
    >"$work/up.log" 2>&1 || {
    tail -30 "$work/up.log"
    fail "podman-compose up failed (log above)"
}

container() { # the name of a service's first container
    podman ps --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}

# ------------------------------------------------------------------------------------------------
phase "wait for /readyz"
deadline=$((SECONDS + 300))
until curl -fsS "http://127.0.0.1:$port/readyz" >"$work/readyz.json" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the API did not answer /readyz on port $port in 5 min"
    sleep 2
done
api="$(container api)"
postgres="$(container postgres)"
workers="$(podman ps --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=ray-worker" --format '{{.Names}}' | wc -l)"
[ "$workers" -eq 2 ] || fail "expected 2 ray-worker containers, found $workers"

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
phase "sweep"

cat >"$work/sweep.yaml" <<'YAML'
name: compose-e2e-digits
method: random
metric: {name: val_accuracy, goal: maximize}
parameters:
  units: {values: [16, 32]}
  learning_rate: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-2}
run_cap: 4
parallelism: 2
trial:
  hypermodel: ktsweep.examples.digits:build_model
  data: ktsweep.examples.digits:load_data
  fit: {epochs: 2, batch_size: 64}
  resources: {cpu: 1}
wandb: {project: ktsweep-compose-e2e, mode: offline}
YAML

"$python" - "$port" "$KTSWEEP_API_TOKENS" "$work/sweep.yaml" >"$work/sweep.json" <<'PY' ||
import json
import sys

import httpx

url, token, spec_path = f"http://127.0.0.1:{sys.argv[1]}/api/v1", sys.argv[2], sys.argv[3]
headers = {"Authorization": f"Bearer {token}"}
with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
    answer = http.post(
        "/sweeps",
        content=open(spec_path).read(),
        headers={"Content-Type": "application/yaml"},
    )
    if answer.status_code != 201:
        sys.exit(f"submitting the sweep: HTTP {answer.status_code}: {answer.text}")
    sweep = answer.json()
    import time

    deadline = time.monotonic() + 900
    while sweep["state"] == "running" and time.monotonic() < deadline:
        time.sleep(2)
        sweep = http.get(f"/sweeps/{sweep['id']}").json()
    trials = http.get(f"/sweeps/{sweep['id']}/trials", params={"limit": 500}).json()["items"]
print(json.dumps({"id": sweep["id"], "state": sweep["state"], "trials": trials}))
PY
    fail "the sweep could not be run through the API: $(cat "$work/sweep.json")"
"$python" - "$work/sweep.json" <<'PY' || fail "the sweep did not finish as expected (above)"
import json
import sys

sweep = json.load(open(sys.argv[1]))
states = [trial["state"] for trial in sweep["trials"]]
print(f"sweep {sweep['id']}: {sweep['state']}, trials: {states}")
for trial in sweep["trials"]:
    if trial["state"] != "completed":
        print(f"trial {trial['id']}: {trial['state']}: {trial.get('error')}")
ok = sweep["state"] == "finished" and len(states) == 4 and set(states) == {"completed"}
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
# The API container runs KTSWEEP_API_PROCESSES (2 by default) processes on one port.
"$python" - "$port" <<'PY' || fail "the API did not answer from its 2 processes"
import sys
import time

import httpx

roles = {}
deadline = time.monotonic() + 60
while len(roles) < 2 and time.monotonic() < deadline:
    answer = httpx.get(f"http://127.0.0.1:{sys.argv[1]}/healthz").json()  # a new connection
    roles[answer["pid"]] = answer["role"]
print(f"API processes that answered /healthz: {sorted(roles.values())}")
sys.exit(0 if sorted(roles.values()) == ["follower", "scheduler"] else 1)
PY
sweep_id="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/sweep.json")"
rows="$(podman exec "$postgres" psql -U ktsweep -d ktsweep -tAc \
    "select count(*) from trials where sweep_id = '$sweep_id' and state = 'completed'")" ||
    fail "could not query the containerised PostgreSQL"
echo "PostgreSQL: $rows completed trials of sweep $sweep_id in table trials"
[ "$rows" -eq 4 ] || fail "expected 4 completed trial rows in PostgreSQL, found '$rows'"
nodes="$(podman exec "$postgres" psql -U ktsweep -d ktsweep -tAc \
    "select count(distinct node->>'id') from trials where sweep_id = '$sweep_id'")" ||
    fail "could not query the containerised PostgreSQL"
echo "PostgreSQL: the trials of sweep $sweep_id ran on $nodes Ray nodes (column trials.node)"
[ "$nodes" -ge 2 ] || fail "expected the trial rows to name at least 2 Ray nodes, found '$nodes'"
