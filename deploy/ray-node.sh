#!/bin/sh
# Start this container's Ray node, then (for the API) the controller. Installed as `ray-node`.
#
#   ray-node head [RAY START ARGS]       the head node (GCS on port 6379), runs in the foreground
#   ray-node worker [RAY START ARGS]     a worker node that joins $KTSWEEP_RAY_ADDRESS
#   ray-node driver COMMAND [ARGS]       joins with no CPUs (a Ray driver needs a node of its own
#                                        on its host), then runs COMMAND, e.g. `ktsweep serve`
#
# Token auth: every node and driver reads the same RAY_AUTH_TOKEN (RAY_AUTH_MODE=token).
set -eu

role="${1:?usage: ray-node head|worker|driver ...}"
shift
address="${KTSWEEP_RAY_ADDRESS:-ray-head:6379}"
object_store="${RAY_OBJECT_STORE_MEMORY:-500000000}"

if [ "${RAY_AUTH_MODE:-token}" = "token" ] && [ -z "${RAY_AUTH_TOKEN:-}" ] \
    && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
    echo "ray-node: RAY_AUTH_TOKEN is not set. Set the same random token on every Ray node and" \
        "on the API (e.g. RAY_AUTH_TOKEN=\$(openssl rand -hex 32) in .env)." >&2
    exit 2
fi

wait_for_head() {
    # The head may still be starting (compose starts services in parallel); wait up to 5 min.
    tries=0
    until ray health-check --address "$address" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 150 ]; then
            echo "ray-node: no Ray head answers at $address after 5 minutes; check" \
                "KTSWEEP_RAY_ADDRESS and RAY_AUTH_TOKEN." >&2
            exit 1
        fi
        sleep 2
    done
}

case "$role" in
head)
    exec ray start --head --port=6379 --include-dashboard=false \
        --object-store-memory="$object_store" --block "$@"
    ;;
worker)
    wait_for_head
    exec ray start --address="$address" --object-store-memory="$object_store" --block "$@"
    ;;
driver)
    wait_for_head
    ray start --address="$address" --num-cpus=0 --num-gpus=0 \
        --object-store-memory="$object_store"
    exec "$@"
    ;;
*)
    echo "ray-node: unknown role '$role'; use head, worker or driver." >&2
    exit 2
    ;;
esac
