"""moto's server, with ECS deployments that move, for launchway's tests.

moto stores ECS resources faithfully but schedules nothing: a service keeps one PRIMARY
deployment whose task definition does not follow UpdateService, its counts never move,
and it forgets the deployment configuration. This program runs moto's threaded server
with its ECS backend extended so that:

- CreateService keeps `deploymentConfiguration` and starts COMPLETED (a healthy service);
- UpdateService with a new task definition (or forceNewDeployment) starts a new PRIMARY
  deployment IN_PROGRESS, the previous one becoming ACTIVE, and keeps the deployment
  configuration it is given; a new desired count alone starts no deployment, and the
  running one reaches the count at the next look;
- every DescribeServices call advances in-progress deployments one tick. What happens
  after TICKS ticks is chosen by the new task definition: the value of the environment
  variable LAUNCHWAY_TEST_ROLLOUT on its first container (a completed deployment runs
  desiredCount RUNNING tasks of its definition and stops the service's older tasks, so
  tools that count tasks, as ecs-deploy does, see what they would on ECS):
    complete (the default)  the deployment completes and older ones go away;
    complete-after:<s>      likewise, but only once <s> seconds have passed since the
                            deployment started, however often it is looked at (for
                            benchmarks that compare tools polling at different rates);
    fail                    the deployment FAILS as ECS's circuit breaker fails it, with
                            stopped tasks carrying reasons, and, when the circuit
                            breaker's rollback is on, the service goes back to the last
                            completed task definition in a new deployment;
    stuck                   it stays IN_PROGRESS for ever (for timeouts);
    crashloop               it stays IN_PROGRESS with no task running, one more task
                            failing at every look, as ECS does for ever when its
                            circuit breaker is off;
    lose-after-complete     it completes, and at the third look after that one of its
                            tasks stops (exit code 137) and the running count drops,
                            as when a release dies soon after it turned healthy;
- a service whose deployment configuration has a native `strategy` (BLUE_GREEN, CANARY,
  LINEAR) deploys as ECS's own strategies do, followed through DescribeServiceDeployments
  and DescribeServiceRevisions: each look (DescribeServiceDeployments) moves the deployment one lifecycle stage on (PRE_SCALE_UP,
  SCALE_UP, POST_SCALE_UP, TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT, then
  PRODUCTION_TRAFFIC_SHIFT once per traffic step with its production weight, then
  POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME, CLEAN_UP) to SUCCESSFUL; bake times last
  MINUTE seconds per minute; at a stage with a PAUSE lifecycle hook it waits, its hook
  AWAITING_ACTION, until ContinueServiceDeployment (CONTINUE goes on, ROLLBACK rolls
  back) or its timeout (then its timeout action); StopServiceDeployment with ROLLBACK
  rolls back; a rollback ends ROLLBACK_SUCCESSFUL with the service on the source
  revision's task definition. LAUNCHWAY_TEST_ROLLOUT=fail fails it at SCALE_UP (ECS rolls
  back); =alarm rolls it back as a CloudWatch alarm would, once production traffic
  has shifted, when the configuration's alarms ask for rollbacks;
- a task started by RunTask (a task run once on deploy) stops at once with the exit code
  its task definition's first container names in LAUNCHWAY_TEST_EXIT_CODE, for every
  container (without the variable it stays RUNNING, as moto leaves it);
- a task run in an awsvpc network gets its network interface (moto's own code asks the
  interface for a private DNS name it does not have);
- an access key `AKIA0000<12-digit account>` selects that account (moto reads 20-char
  keys only), so that a test can set up resources in the account of a role that
  launchway assumes, or keep its resources apart from other tests'.

Usage: python ecs_rollouts.py — prints `port <n>` once listening on 127.0.0.1, and exits
when its standard input closes (when the test process that started it ends).
"""

import sys
import threading
from datetime import timedelta

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs.exceptions import EcsClientException as ClientException
from moto.ecs import models
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.iam import models as iam_models
from moto.moto_api._internal import mock_random
from moto.moto_api import state_manager
from moto.server import ThreadedMotoServer

ROLLOUT = "LAUNCHWAY_TEST_ROLLOUT"
EXIT_CODE = "LAUNCHWAY_TEST_EXIT_CODE"
TICKS = 2
# lose-after-complete: the looks at a completed deployment before one of its tasks stops.
LOSE_AFTER_LOOKS = 3
DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
}
LOCK = threading.Lock()
# How long a minute of a native strategy's bake time lasts here, in seconds.
MINUTE = 0.5
NATIVE_STRATEGIES = ("BLUE_GREEN", "CANARY", "LINEAR")
# Service revisions and native deployments, by ARN.
REVISIONS = {}
NATIVE = {}


def behaviour(backend, task_definition_arn):
    return definition_variable(backend, task_definition_arn, ROLLOUT) or "complete"


def definition_variable(backend, task_definition_arn, name):
    """The value of the environment variable `name` on the definition's first container."""
    definition = backend.describe_task_definition(task_definition_arn)
    for container in definition.container_definitions[:1]:
        for variable in container.get("environment") or []:
            if variable.get("name") == name:
                return variable.get("value")
    return None


def event(service, message):
    service.events.insert(
        0, {"id": str(mock_random.uuid4()), "createdAt": utcnow(), "message": f"(service {service.name}) {message}"}
    )


def start_deployment(backend, service, task_definition, completed=False):
    for deployment in service.deployments:
        if deployment["status"] == "PRIMARY":
            deployment["status"] = "ACTIVE"
    deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
    now = utcnow()
    service.deployments.insert(
        0,
        {
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": 0 if completed else service.desired_count,
            "runningCount": service.desired_count if completed else 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            "launchType": service.launch_type,
            "rolloutState": "COMPLETED" if completed else "IN_PROGRESS",
            "rolloutStateReason": f"ECS deployment {deployment_id} {'completed' if completed else 'in progress'}.",
        },
    )
    service.launchway_ticks = 0
    service.launchway_lost = False
    service.launchway_looks_since = 0
    if completed:
        service.deployments[1:] = []
        service.running_count, service.pending_count = service.desired_count, 0
        run_tasks(backend, service, service.deployments[0])


def service_tasks(backend, service):
    cluster = backend._get_cluster(service.cluster_name)
    return cluster, backend.tasks.setdefault(cluster.name, {})


def run_tasks(backend, service, deployment):
    """The deployment's tasks replace the service's running ones."""
    cluster, tasks = service_tasks(backend, service)
    for task in tasks.values():
        if task.group == f"service:{service.name}" and task.desired_status == "RUNNING":
            task.desired_status = "STOPPED"
            task.last_status = "STOPPED"
            task.stopped_reason = f"Task stopped by deployment {deployment['id']}"
    definition = backend.describe_task_definition(deployment["taskDefinition"])
    for _ in range(service.desired_count):
        try:
            task = models.Task(cluster, definition, None, None, backend, group=f"service:{service.name}",
                               started_by=deployment["id"],
                               networking_configuration=service.network_configuration or None)
        except Exception:  # noqa: BLE001 - moto refuses tasks it cannot place (awsvpc
            # without a network configuration); the service's counts still tell the story.
            return
        task.desired_status = "RUNNING"
        task.last_status = "RUNNING"
        tasks[task.task_arn] = task


def stop_tasks(backend, service, deployment, count, reason):
    cluster, tasks = service_tasks(backend, service)
    definition = backend.describe_task_definition(deployment["taskDefinition"])
    for _ in range(count):
        task = models.Task(cluster, definition, None, None, backend, group=f"service:{service.name}",
                           started_by=deployment["id"])
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        task.stopped_reason = reason
        tasks[task.task_arn] = task


def lose_a_task(backend, service, primary):
    primary["runningCount"] = max(primary["runningCount"] - 1, 0)
    primary["failedTasks"] = primary.get("failedTasks", 0) + 1
    service.running_count = max(service.running_count - 1, 0)
    cluster, tasks = service_tasks(backend, service)
    for task in tasks.values():
        if task.group == f"service:{service.name}" and task.desired_status == "RUNNING":
            task.desired_status = "STOPPED"
            task.last_status = "STOPPED"
            task.stopped_reason = "Essential container in task exited (exit code 137)"
            break
    event(service, f"has stopped 1 running tasks: deployment {primary['id']}.")
    service.launchway_lost = True


def advance(backend, service):
    primary = next((d for d in service.deployments if d["status"] == "PRIMARY"), None)
    if primary is None:
        return
    chosen = behaviour(backend, primary["taskDefinition"])
    if primary["rolloutState"] == "COMPLETED" and chosen == "lose-after-complete":
        service.launchway_looks_since = getattr(service, "launchway_looks_since", 0) + 1
        if service.launchway_looks_since >= LOSE_AFTER_LOOKS and not getattr(service, "launchway_lost", False):
            lose_a_task(backend, service, primary)
        return
    if primary["rolloutState"] == "COMPLETED" and primary["runningCount"] != service.desired_count:
        # A new desired count without a new deployment: ECS starts or stops tasks of
        # the deployment that runs.
        primary["desiredCount"] = primary["runningCount"] = service.desired_count
        primary["updatedAt"] = utcnow()
        service.running_count, service.pending_count = service.desired_count, 0
        run_tasks(backend, service, primary)
        event(service, "has reached a steady state.")
        return
    if primary["rolloutState"] != "IN_PROGRESS" or chosen == "stuck":
        return
    if chosen == "crashloop":
        primary["updatedAt"] = utcnow()
        primary["failedTasks"] = primary.get("failedTasks", 0) + 1
        primary["runningCount"], primary["pendingCount"] = 0, service.desired_count
        stop_tasks(backend, service, primary, 1, "Essential container in task exited (exit code 1)")
        event(service, f"has started 1 tasks: deployment {primary['id']}.")
        return
    if chosen == "lose-after-complete":
        chosen = "complete"
    service.launchway_ticks = getattr(service, "launchway_ticks", 0) + 1
    primary["updatedAt"] = utcnow()
    waiting = False
    if chosen.startswith("complete-after:"):
        elapsed = (utcnow() - primary["createdAt"]).total_seconds()
        waiting = elapsed < float(chosen.split(":", 1)[1])
        chosen = "complete"
    elif service.launchway_ticks < TICKS:
        waiting = True
    if waiting:
        primary["runningCount"] = min(1, service.desired_count) if chosen == "complete" else 0
        primary["pendingCount"] = service.desired_count - primary["runningCount"]
        event(service, f"has started {primary['pendingCount']} tasks: deployment {primary['id']}.")
        return
    if chosen == "fail":
        primary["rolloutState"] = "FAILED"
        primary["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
        primary["failedTasks"] = max(service.desired_count, 1)
        primary["runningCount"], primary["pendingCount"] = 0, 0
        stop_tasks(backend, service, primary, primary["failedTasks"],
                   "Essential container in task exited (exit code 1)")
        event(service, f"deployment {primary['id']} deployment failed: tasks failed to start.")
        breaker = (service.deployment_configuration or {}).get("deploymentCircuitBreaker") or {}
        previous = next((d for d in service.deployments[1:] if d.get("rolloutState") == "COMPLETED"), None)
        if breaker.get("rollback") and previous is not None:
            service.task_definition = previous["taskDefinition"]
            event(service, f"rolling back to deployment {previous['id']}.")
            start_deployment(backend, service, previous["taskDefinition"], completed=True)
        return
    primary["rolloutState"] = "COMPLETED"
    primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
    primary["runningCount"], primary["pendingCount"] = service.desired_count, 0
    service.deployments[1:] = []
    service.running_count, service.pending_count = service.desired_count, 0
    run_tasks(backend, service, primary)
    event(service, "has reached a steady state.")


def service_revision(service, task_definition):
    """A service revision for the task definition (one per deployment, as ECS makes)."""
    arn = f"{service.arn.replace(':service/', ':service-revision/')}/{mock_random.randint(0, 10**18)}"
    REVISIONS[arn] = {
        "serviceRevisionArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "taskDefinition": task_definition,
        "createdAt": utcnow(),
        "loadBalancers": service.load_balancers,
    }
    return arn


def native_plan(configuration):
    """The stages a native deployment goes through: (stage, production weight, bake s)."""
    strategy = configuration.get("strategy")
    stages = [("PRE_SCALE_UP", 0, 0), ("SCALE_UP", 0, 0), ("POST_SCALE_UP", 0, 0),
              ("TEST_TRAFFIC_SHIFT", 0, 0), ("POST_TEST_TRAFFIC_SHIFT", 0, 0)]
    if strategy == "CANARY":
        canary = configuration.get("canaryConfiguration") or {}
        stages.append(("PRODUCTION_TRAFFIC_SHIFT", float(canary.get("canaryPercent", 5)),
                       MINUTE * canary.get("canaryBakeTimeInMinutes", 0)))
    elif strategy == "LINEAR":
        linear = configuration.get("linearConfiguration") or {}
        step = float(linear.get("stepPercent", 10))
        weight = step
        while weight < 100:
            stages.append(("PRODUCTION_TRAFFIC_SHIFT", weight, MINUTE * linear.get("stepBakeTimeInMinutes", 0)))
            weight += step
    stages += [("PRODUCTION_TRAFFIC_SHIFT", 100.0, 0), ("POST_PRODUCTION_TRAFFIC_SHIFT", 100.0, 0),
               ("BAKE_TIME", 100.0, MINUTE * configuration.get("bakeTimeInMinutes", 0)), ("CLEAN_UP", 100.0, 0)]
    return stages


def pause_hooks(configuration, stage):
    return [hook for hook in configuration.get("lifecycleHooks") or []
            if hook.get("targetType") == "PAUSE" and stage in (hook.get("lifecycleStages") or [])]


def start_native(backend, service, source_task_definition):
    configuration = service.deployment_configuration or {}
    arn = f"{service.arn.replace(':service/', ':service-deployment/')}/{mock_random.randint(0, 10**18)}"
    now = utcnow()
    source = service_revision(service, source_task_definition) if source_task_definition else None
    target = service_revision(service, service.task_definition)
    for other in NATIVE.values():
        if other["serviceArn"] == service.arn and other["status"] in ("PENDING", "IN_PROGRESS"):
            other["status"], other["statusReason"] = "STOPPED", "superseded by a newer deployment"
    NATIVE[arn] = {
        "serviceDeploymentArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "createdAt": now,
        "startedAt": now,
        "updatedAt": now,
        "sourceServiceRevisions": [{"arn": source, "requestedTaskCount": service.desired_count,
                                    "runningTaskCount": service.desired_count, "pendingTaskCount": 0,
                                    "requestedProductionTrafficWeight": 100.0}] if source else [],
        "targetServiceRevision": {"arn": target, "requestedTaskCount": service.desired_count,
                                  "runningTaskCount": 0, "pendingTaskCount": service.desired_count,
                                  "requestedProductionTrafficWeight": 0.0, "requestedTestTrafficWeight": 0.0},
        "status": "IN_PROGRESS",
        "statusReason": "",
        "lifecycleStage": "RECONCILE_SERVICE",
        "lifecycleHookDetails": [],
        "deploymentConfiguration": configuration,
        "launchway": {"plan": native_plan(configuration), "at": -1, "bake_until": None,
                      "source_task_definition": source_task_definition, "service": service},
    }
    service.current_service_deployment = arn


def begin_rollback(deployment, reason, status="ROLLBACK_IN_PROGRESS"):
    deployment["launchway"]["rollback_reason"] = reason
    deployment["status"], deployment["statusReason"] = status, reason
    deployment["updatedAt"] = utcnow()


def native_rolled_back(backend, deployment, reason):
    model = deployment["launchway"]
    service = model["service"]
    deployment["status"] = "ROLLBACK_SUCCESSFUL"
    deployment["statusReason"] = reason
    deployment["finishedAt"] = deployment["updatedAt"] = utcnow()
    sources = deployment["sourceServiceRevisions"]
    deployment["rollback"] = {"reason": reason, "startedAt": utcnow(),
                              "serviceRevisionArn": sources[0]["arn"] if sources else None}
    deployment["targetServiceRevision"]["requestedProductionTrafficWeight"] = 0.0
    for hook in deployment["lifecycleHookDetails"]:
        if hook["status"] == "AWAITING_ACTION":
            hook["status"] = "SUCCEEDED"
    if model["source_task_definition"]:
        service.task_definition = model["source_task_definition"]
        event(service, f"rolled back deployment {deployment['serviceDeploymentArn']}: {reason}")
        start_deployment(backend, service, model["source_task_definition"], completed=True)


def advance_native(backend, deployment):
    model = deployment["launchway"]
    service = model["service"]
    status = deployment["status"]
    now = utcnow()
    if status in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"):
        if status == "ROLLBACK_REQUESTED":
            deployment["status"] = "ROLLBACK_IN_PROGRESS"
        else:
            native_rolled_back(backend, deployment, model.get("rollback_reason", "rolled back"))
        return
    if status != "IN_PROGRESS":
        return
    deployment["updatedAt"] = now
    for hook in deployment["lifecycleHookDetails"]:
        if hook["status"] == "AWAITING_ACTION":
            if now < hook["expiresAt"]:
                return
            hook["status"] = "TIMED_OUT"
            if hook["timeoutAction"] == "ROLLBACK":
                begin_rollback(deployment, "the pause hook timed out")
                return
    if model["bake_until"] is not None and now < model["bake_until"]:
        return
    model["bake_until"] = None
    chosen = behaviour(backend, service.task_definition)
    stage = deployment["lifecycleStage"]
    if chosen == "stuck" and stage == "SCALE_UP":
        return
    if chosen == "fail" and stage == "SCALE_UP":
        deployment["targetServiceRevision"]["runningTaskCount"] = 0
        begin_rollback(deployment, "tasks failed to start")
        stop_tasks(backend, service, service.deployments[0], 1, "Essential container in task exited (exit code 1)")
        return
    alarms = (deployment["deploymentConfiguration"].get("alarms") or {})
    if chosen == "alarm" and stage == "PRODUCTION_TRAFFIC_SHIFT" and alarms.get("enable") and alarms.get("rollback"):
        begin_rollback(deployment, f"alarm {','.join(alarms.get('alarmNames') or [])} went off")
        return
    model["at"] += 1
    if model["at"] >= len(model["plan"]):
        deployment["status"] = "SUCCESSFUL"
        deployment["statusReason"] = "completed"
        deployment["finishedAt"] = now
        target = deployment["targetServiceRevision"]
        target["runningTaskCount"], target["pendingTaskCount"] = service.desired_count, 0
        for source in deployment["sourceServiceRevisions"]:
            source["runningTaskCount"], source["requestedProductionTrafficWeight"] = 0, 0.0
        primary = service.deployments[0]
        primary["rolloutState"], primary["rolloutStateReason"] = "COMPLETED", "completed"
        primary["runningCount"], primary["pendingCount"] = service.desired_count, 0
        service.deployments[1:] = []
        service.running_count, service.pending_count = service.desired_count, 0
        run_tasks(backend, service, primary)
        event(service, "has reached a steady state.")
        return
    stage, weight, bake = model["plan"][model["at"]]
    deployment["lifecycleStage"] = stage
    target = deployment["targetServiceRevision"]
    if stage == "SCALE_UP":
        target["runningTaskCount"], target["pendingTaskCount"] = service.desired_count, 0
    if stage.startswith("TEST_TRAFFIC") or stage == "POST_TEST_TRAFFIC_SHIFT":
        target["requestedTestTrafficWeight"] = 100.0
    target["requestedProductionTrafficWeight"] = weight
    for source in deployment["sourceServiceRevisions"]:
        source["requestedProductionTrafficWeight"] = 100.0 - weight
    if bake:
        model["bake_until"] = now + timedelta(seconds=bake)
    for hook in pause_hooks(deployment["deploymentConfiguration"], stage):
        timeout = hook.get("timeoutConfiguration") or {}
        deployment["lifecycleHookDetails"].append({
            "hookId": f"ecs-pause-{mock_random.randint(0, 10**18)}",
            "targetType": "PAUSE",
            "status": "AWAITING_ACTION",
            "expiresAt": now + timedelta(seconds=60 * timeout.get("timeoutInMinutes", 1440)),
            "timeoutAction": timeout.get("action", "ROLLBACK"),
        })


def public(deployment):
    return {key: value for key, value in deployment.items() if key != "launchway"}


def describe_service_deployments(self):
    with LOCK:
        found = []
        for arn in self._get_param("serviceDeploymentArns") or []:
            deployment = NATIVE.get(arn)
            if deployment is not None:
                advance_native(self.ecs_backend, deployment)
                found.append(public(deployment))
        return ActionResult({"serviceDeployments": found, "failures": []})


def describe_service_revisions(self):
    with LOCK:
        found = [REVISIONS[arn] for arn in self._get_param("serviceRevisionArns") or [] if arn in REVISIONS]
        return ActionResult({"serviceRevisions": found, "failures": []})


def waiting_hook(deployment, hook_id):
    if deployment is None or deployment["status"] != "IN_PROGRESS":
        raise ClientException("the service deployment is not in progress")
    for hook in deployment["lifecycleHookDetails"]:
        if hook["hookId"] == hook_id and hook["status"] == "AWAITING_ACTION":
            return hook
    raise ClientException(f"no pause hook {hook_id} awaits action")


def continue_service_deployment(self):
    with LOCK:
        arn = self._get_param("serviceDeploymentArn")
        deployment = NATIVE.get(arn)
        hook = waiting_hook(deployment, self._get_param("hookId"))
        hook["status"] = "SUCCEEDED"
        if self._get_param("action", "CONTINUE") == "ROLLBACK":
            begin_rollback(deployment, "rolled back at a pause hook")
        return ActionResult({"serviceDeploymentArn": arn})


def stop_service_deployment(self):
    with LOCK:
        arn = self._get_param("serviceDeploymentArn")
        deployment = NATIVE.get(arn)
        if deployment is None or deployment["status"] not in ("PENDING", "IN_PROGRESS"):
            raise ClientException("the service deployment is not in progress")
        if self._get_param("stopType", "ABORT") == "ROLLBACK":
            begin_rollback(deployment, "stopped with a rollback", "ROLLBACK_REQUESTED")
        else:
            deployment["status"] = "STOPPED"
        return ActionResult({"serviceDeploymentArn": arn})


original_create_service = EC2ContainerServiceResponse.create_service
original_update_service = models.EC2ContainerServiceBackend.update_service
original_describe_services = models.EC2ContainerServiceBackend.describe_services
original_account_from_key = iam_models.get_account_id_from
original_run_task = models.EC2ContainerServiceBackend.run_task


def create_service(self):
    result = original_create_service(self)
    with LOCK:
        service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
        service.deployment_configuration = self._get_param("deploymentConfiguration") or DEFAULT_DEPLOYMENT_CONFIGURATION
        if service.task_definition:
            start_deployment(self.ecs_backend, service, service.task_definition, completed=True)
    return result


def update_service(self, properties):
    with LOCK:
        task_definition = properties.get("task_definition")
        force = properties.get("force_new_deployment", False)
        configuration = properties.pop("deployment_configuration", None)
        service = self._get_service(properties.get("cluster", "default"), properties["service"].split("/")[-1])
        before = service.task_definition
        updated = original_update_service(self, properties)
        if configuration is not None:
            updated.deployment_configuration = configuration
        if task_definition:
            # moto stores what it was given (a family, a family:revision); ECS stores the ARN.
            updated.task_definition = self.describe_task_definition(task_definition).arn
        if updated.task_definition != before or force:
            start_deployment(self, updated, updated.task_definition)
            if (updated.deployment_configuration or {}).get("strategy") in NATIVE_STRATEGIES:
                start_native(self, updated, before)
        for deployment in updated.deployments:
            deployment["desiredCount"] = updated.desired_count
        return updated


def describe_services(self, *args, **kwargs):
    with LOCK:
        result = original_describe_services(self, *args, **kwargs)
        services = result[0] if isinstance(result, tuple) else result
        for service in services:
            # A native deployment moves as DescribeServiceDeployments looks at it.
            native = NATIVE.get(getattr(service, "current_service_deployment", None)) or {}
            moving = native.get("status") in ("PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
            if isinstance(service, models.Service) and not moving:
                advance(self, service)
        return result


def run_task(self, *args, **kwargs):
    with LOCK:
        tasks = original_run_task(self, *args, **kwargs)
        for task in tasks:
            code = definition_variable(self, task.task_definition_arn, EXIT_CODE)
            if code is None:
                continue
            task.last_status = "STOPPED"
            task.desired_status = "STOPPED"
            task.stopped_reason = "Essential container in task exited"
            for container in task.containers:
                container.last_status = "STOPPED"
                container.exitCode = int(code)
                container.exit_code = int(code)
        return tasks


def account_from_key(access_key):
    account = access_key[len("AKIA0000"):]
    if access_key.startswith("AKIA0000") and len(account) == 12 and account.isdigit():
        return account
    return original_account_from_key(access_key)


EC2ContainerServiceResponse.create_service = create_service
EC2ContainerServiceResponse.describe_service_deployments = describe_service_deployments
EC2ContainerServiceResponse.describe_service_revisions = describe_service_revisions
EC2ContainerServiceResponse.continue_service_deployment = continue_service_deployment
EC2ContainerServiceResponse.stop_service_deployment = stop_service_deployment
models.EC2ContainerServiceBackend.update_service = update_service
models.EC2ContainerServiceBackend.describe_services = describe_services
models.EC2ContainerServiceBackend.run_task = run_task
if not hasattr(NetworkInterface, "private_dns_name"):
    NetworkInterface.private_dns_name = property(
        lambda eni: f"ip-{eni.private_ip_address.replace('.', '-')}.{eni.ec2_backend.region_name}.compute.internal"
    )
iam_models.get_account_id_from = account_from_key


def main():
    # Tasks stay where the rollout model puts them; moto would otherwise walk each one
    # towards STOPPED a step per look.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 2**62})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(f"port {server.get_host_and_port()[1]}", flush=True)
    # Live as long as whoever started us: they hold our standard input.
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
