#!/usr/bin/env bash
# What every node of cluster.yaml and cluster-local.yaml runs: one source for both files.
#   cluster-node.sh setup     install the project as `make run` does; ray, ablab on the PATH
#   cluster-node.sh head      MLflow server and Ray head, both on this node's address
#   cluster-node.sh worker    join the head at $RAY_HEAD_IP (set by Ray's launcher)
# Settings come from the environment the cluster file sets:
#   ABLAB_SHARED     the folder every node mounts (NFS): results, checkpoints, stages, MLflow
#   RAY_PORT, DASHBOARD_PORT, AGENT_PORT (the dashboard agent: Ray's default 52365), MLFLOW_PORT
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
ray_port=${RAY_PORT:-6379}
dashboard_port=${DASHBOARD_PORT:-8265}
agent_port=${AGENT_PORT:-52365}
mlflow_port=${MLFLOW_PORT:-5000}

# The address this node was reached at by SSH is the one the other nodes reach it at; a
# machine can have several (docker bridges, a public one), and the first of `hostname -I`
# is not always the private one.
node_ip=$(awk '{print $3}' <<<"${SSH_CONNECTION:-}")
node_ip=${node_ip:-$(hostname -I | awk '{print $1}')}

case "${1:-}" in
setup)
    make setup
    # `ray down` and `ray exec` run plain `ray ...` in a login shell; jobs run `ablab ...`.
    line="export PATH=$here/.venv/bin:\$PATH"
    grep -qxF "$line" ~/.bashrc || echo "$line" >> ~/.bashrc
    ;;
head)
    shared=${ABLAB_SHARED:?set ABLAB_SHARED to the folder every node mounts}
    .venv/bin/ray stop
    # One MLflow server per head: a second `ray up` replaces the first one's server.
    if [[ -f ~/mlflow.pid ]]; then kill "$(cat ~/mlflow.pid)" 2>/dev/null || true; fi
    mkdir -p "$shared/ablab_results"
    # Without MLflow's job runners (GenAI jobs; ablab uses none): eight processes, 1.8 GB.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
    nohup .venv/bin/mlflow server --host "$node_ip" --port "$mlflow_port" --workers 1 \
        --backend-store-uri "sqlite:///$shared/mlflow.db" --artifacts-destination "$shared/mlartifacts" \
        > ~/mlflow.log 2>&1 < /dev/null &
    echo $! > ~/mlflow.pid
    # Jobs inherit ray start's environment: where results go, which MLflow, which ablab.
    # The autoscaler is Ray's v1: v2 (the launcher's default since Ray 2.50) never starts
    # the local provider's workers (the head's own state file lists the head as terminated).
    RAY_enable_autoscaler_v2=0 ABLAB_STORAGE="$shared/ablab_results" MLFLOW_TRACKING_URI="http://$node_ip:$mlflow_port" \
    PATH="$here/.venv/bin:$PATH" \
        .venv/bin/ray start --head --node-ip-address="$node_ip" --port="$ray_port" \
        --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port" --dashboard-agent-listen-port="$agent_port" \
        --autoscaling-config="$HOME/ray_bootstrap_config.yaml"
    ;;
worker)
    shared=${ABLAB_SHARED:?set ABLAB_SHARED to the folder every node mounts}
    .venv/bin/ray stop
    ABLAB_STORAGE="$shared/ablab_results" PATH="$here/.venv/bin:$PATH" \
        .venv/bin/ray start --address="${RAY_HEAD_IP:?}:$ray_port" --node-ip-address="$node_ip"
    ;;
*)
    echo "usage: cluster-node.sh setup|head|worker" >&2
    exit 2
    ;;
esac
