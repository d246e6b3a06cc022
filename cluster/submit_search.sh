#!/usr/bin/env bash
# Submit a mammo_ray search to the cluster of cluster/cluster.yaml (after `ray up`).
#
#   cluster/submit_search.sh STORAGE [NAME] [-- MORE_SEARCH_ARGS...]
#
# STORAGE  Ray Tune's storage, shared by every node, e.g. s3://BUCKET/mammo-ray/runs: the
#          trials run on the GPU workers, which cannot write to the head's disk.
# NAME     the search's name (default: search-YYYYmmdd-HHMMSS).
# Environment: SPACE (default search_spaces/default.yaml), CPUS_PER_TRIAL (default 4, all
# of a g5.xlarge), MLFLOW_URI (default: the SQLite file on the head), DASHBOARD_PORT (local
# port for the dashboard, default 8265).
#
# The data comes from $MAMMO_RAY_DATA, which cluster.yaml sets on every node. Paths are
# absolute: a job runs in a temporary copy of the working directory.
# Port-forwards the dashboard, submits the job and follows its logs. Ctrl-C stops following,
# not the search: `ray job stop JOB_ID --address http://127.0.0.1:8265` stops it.
set -euo pipefail

usage() {
  echo "usage: cluster/submit_search.sh STORAGE [NAME] [-- MORE_SEARCH_ARGS...]" >&2
  exit 2
}

[[ $# -ge 1 && $1 != -* ]] || usage
storage=$1
shift
name="search-$(date +%Y%m%d-%H%M%S)"
if [[ $# -ge 1 && $1 != -- ]]; then
  name=$1
  shift
fi
if [[ $# -ge 1 ]]; then
  [[ $1 == -- ]] || usage
  shift
fi

cd "$(dirname "$0")/.."
port=${DASHBOARD_PORT:-8265}
dashboard="http://127.0.0.1:$port"

# Job control gives the port-forward its own process group, so the trap also ends its ssh.
set -m
ray dashboard cluster/cluster.yaml --port "$port" >/dev/null &
forward=$!
trap 'kill -- "-$forward" 2>/dev/null || true' EXIT

for _ in $(seq 60); do
  curl -sf "$dashboard/api/version" >/dev/null && break
  sleep 1
done
curl -sf "$dashboard/api/version" >/dev/null || {
  echo "error: no Ray dashboard at $dashboard; is the cluster up (ray up cluster/cluster.yaml)?" >&2
  exit 1
}

ray job submit --address "$dashboard" --working-dir . \
  --runtime-env-json '{"excludes": [".git"]}' -- \
  python -m mammo_ray.search \
  --address auto --gpus-per-trial 1 --cpus-per-trial "${CPUS_PER_TRIAL:-4}" \
  --storage "$storage" --name "$name" --space "${SPACE:-search_spaces/default.yaml}" \
  --cache /home/ubuntu/runs/cache \
  --mlflow-uri "${MLFLOW_URI:-sqlite:////home/ubuntu/runs/mlflow.db}" \
  "$@"
