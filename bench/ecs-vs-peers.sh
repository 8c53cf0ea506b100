#!/usr/bin/env bash
# Wall time of a one-image ECS service update, from trigger to verified, for:
#   launchway     `launchway deploy` after a commit changing the image
#   AWS CLI       `aws ecs register-task-definition`, `update-service`, `wait services-stable`
#   ecs-deploy    fabfuel's `ecs deploy CLUSTER SERVICE --image CONTAINER IMAGE`
# all against the same moto server, with launchway's ECS rollout model
# (crates/testkit/moto/ecs_rollouts.py) making every deployment complete
# DEPLOY_SECONDS after it starts, whoever polls and however often.
#
# Usage: bench/ecs-vs-peers.sh        (ROUNDS=5 DEPLOY_SECONDS=2 by default;
#        LAUNCHWAY_BIN=path/to/launchway measures that build instead of building one)
# Needs python3 and the network to PyPI the first time (moto, awscli, ecs-deploy go into
# a virtualenv under ~/.cache/launchway/bench-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DEPLOY_SECONDS=${DEPLOY_SECONDS:-2}
VENV="$HOME/.cache/launchway/bench-venv"
if [ ! -x "$VENV/bin/ecs" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' awscli ecs-deploy
fi
if [ -n "${LAUNCHWAY_BIN:-}" ]; then
    LAUNCHWAY="$LAUNCHWAY_BIN"
else
    cargo build --release --quiet -p launchway
    LAUNCHWAY="${CARGO_TARGET_DIR:-$PWD/target}/release/launchway"
fi

WORK=$(mktemp -d)
trap 'kill "$HARNESS_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkfifo "$WORK/harness-in"
"$VENV/bin/python" crates/testkit/moto/ecs_rollouts.py <"$WORK/harness-in" >"$WORK/harness-out" 2>/dev/null &
HARNESS_PID=$!
exec 3>"$WORK/harness-in"   # the harness lives while this descriptor is open
until grep -q '^port ' "$WORK/harness-out" 2>/dev/null; do sleep 0.1; done
PORT=$(awk '/^port /{print $2}' "$WORK/harness-out")

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=AKIA0000123456789012 AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=ap-northeast-1 AWS_DEFAULT_REGION=ap-northeast-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
aws() { "$VENV/bin/aws" "$@"; }

task_definition() { # family image
    cat <<JSON
{"family": "$1", "containerDefinitions": [{"name": "web", "image": "$2", "memory": 128,
  "environment": [{"name": "LAUNCHWAY_TEST_ROLLOUT", "value": "complete-after:$DEPLOY_SECONDS"}]}]}
JSON
}

aws ecs create-cluster --cluster-name bench >/dev/null
for tool in launchway cli ecsdeploy; do
    task_definition "$tool-web" "web:0" >"$WORK/$tool.json"
    arn=$(aws ecs register-task-definition --cli-input-json "file://$WORK/$tool.json" --query taskDefinition.taskDefinitionArn --output text)
    aws ecs create-service --cluster bench --service-name "$tool-web" --task-definition "$arn" --desired-count 3 >/dev/null
done

git init --quiet -b main "$WORK/repo"
git -C "$WORK/repo" config user.email bench@launchway.invalid
git -C "$WORK/repo" config user.name bench
export LAUNCHWAY_REPO="$WORK/repo" LAUNCHWAY_DB="$WORK/launchway.db"

now() { date +%s.%N; }
declare -A times
for round in $(seq 1 "$ROUNDS"); do
    image="web:$round"

    # The peers stop once the service is stable; so does launchway here (settle window
    # 0s). By default it then watches the deployment for 10 s more, which they never do.
    printf 'environments:\n  bench: {target: {ecs: {cluster: bench}}}\nservices:\n  web:\n    image: %s\n    settle_window: 0s\n    ecs: {service: launchway-web}\n' "$image" >"$WORK/repo/launchway.yaml"
    git -C "$WORK/repo" add -A
    git -C "$WORK/repo" commit --quiet -m "$image"
    start=$(now); "$LAUNCHWAY" deploy >/dev/null; end=$(now)
    times[launchway]+="$(echo "$end - $start" | bc) "

    task_definition cli-web "$image" >"$WORK/cli.json"
    start=$(now)
    arn=$(aws ecs register-task-definition --cli-input-json "file://$WORK/cli.json" --query taskDefinition.taskDefinitionArn --output text)
    aws ecs update-service --cluster bench --service cli-web --task-definition "$arn" >/dev/null
    aws ecs wait services-stable --cluster bench --services cli-web
    end=$(now)
    times[cli]+="$(echo "$end - $start" | bc) "

    start=$(now); "$VENV/bin/ecs" deploy bench ecsdeploy-web --image web "$image" --timeout 600 >/dev/null; end=$(now)
    times[ecsdeploy]+="$(echo "$end - $start" | bc) "
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
L=$(echo "${times[launchway]}" | median)
C=$(echo "${times[cli]}" | median)
E=$(echo "${times[ecsdeploy]}" | median)
echo "one-image ECS service update, trigger to verified; each deployment takes ${DEPLOY_SECONDS}s; median of $ROUNDS"
printf '%-52s %8s %10s\n' "tool" "median" "vs launchway"
printf '%-52s %7.2fs %10s\n' "launchway deploy" "$L" "1.0x"
printf '%-52s %7.2fs %9.1fx\n' "aws ecs register/update-service + wait services-stable" "$C" "$(echo "$C / $L" | bc -l)"
printf '%-52s %7.2fs %9.1fx\n' "ecs deploy (fabfuel ecs-deploy)" "$E" "$(echo "$E / $L" | bc -l)"
echo "all rounds (s): launchway ${times[launchway]}| cli ${times[cli]}| ecs-deploy ${times[ecsdeploy]}"
echo "launchway overhead beyond the ${DEPLOY_SECONDS}s deployment: $(echo "$L - $DEPLOY_SECONDS" | bc) s"
