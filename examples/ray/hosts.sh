#!/usr/bin/env bash
# PICO on a few GPU hosts with Ray: one head, any number of workers, front doors anywhere in the cluster.
# Every host needs the same image or venv (pip install 'pico[ray]', same Python and Ray versions)
# and the models at the same path (a shared --models-dir, or the Hugging Face cache on each host).
set -euo pipefail

HEAD=${HEAD:-10.0.0.1}            # the head host's address, reachable from every host

case "${1:-}" in
head)     # on the head host: start the cluster (its GPUs count too)
    RAY_AUTH_MODE=token ray start --head --port=6379 --include-dashboard=true
    ray get-auth-token             # copy this token to the other hosts (or ~/.ray/auth_token itself)
    ;;
worker)   # on every other GPU host: join the head
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$RAY_AUTH_TOKEN" ray start --address="$HEAD:6379"
    ;;
front)    # on any host of the cluster: a front door; the first one deploys the engines, later ones join them
    RAY_AUTH_MODE=token pico serve --ray auto --replicas "${REPLICAS:-4}" --threadsmax 1 --queue 8 \
        --models-dir /srv/models --api-key "$PICO_API_KEY"
    ;;
batch)    # a CI render job on the same cluster (the engines of the front doors are reused when running)
    RAY_AUTH_MODE=token pico batch jobs.jsonl --ray auto --out renders --report renders/report.json
    ;;
*)
    echo "usage: HEAD=addr $0 head|worker|front|batch" >&2
    exit 2
    ;;
esac
