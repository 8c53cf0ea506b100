// launchway's web page. Every address serves this script, which draws the page from the
// JSON API: `/` the board of apps × environments, `/apps/APP/ENV` one of them, `/runs`
// and `/runs/ID` (where chat messages link), `/audit`, `/dora` and `/tokens`.
//
// Signing in turns a token into an HttpOnly session cookie; the page keeps only the
// session's CSRF token (in memory) and sends it with every change. Data is only ever
// put in the page as text (never parsed as HTML), and the server's
// Content-Security-Policy allows no script but this file and no inline style.

const TERMINAL = new Set(["succeeded", "failed", "rolled_back", "rejected"]);
const ROLES = ["viewer", "deployer", "approver", "admin"];
const SVG = "http://www.w3.org/2000/svg";

const main = document.getElementById("main");
let session = null;

class NeedsSignIn extends Error {}

/// Builds an element: `el("td", {class: "x"}, "text", child)`. Attributes starting
/// with `on` are listeners; null and undefined children are left out.
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) {
      element.append(child instanceof Node ? child : String(child));
    }
  }
  return element;
}

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  const method = (options.method || "GET").toUpperCase();
  if (method !== "GET" && session) headers["x-csrf-token"] = session.csrf;
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (response.status === 401) throw new NeedsSignIn(body.error || "Please sign in.");
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

/// Whether the signed-in role includes `role` (viewer < deployer < approver < admin).
function can(role) {
  return session && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function took(from, to) {
  if (!from || !to) return "";
  const seconds = (to - from) / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function words(text) {
  return String(text).replaceAll("_", " ");
}

function stateLabel(state) {
  return el("span", { class: `state state-${state}`, "data-state": state }, words(state));
}

function healthLabel(health) {
  return el("span", { class: `health health-${health.state}` }, words(health.state));
}

function show(...children) {
  main.replaceChildren(...children);
}

function outcomeLine() {
  return el("p", { role: "status", class: "outcome" });
}

/// Runs `action`, saying so in `outcome`; errors are shown there.
async function act(outcome, doing, action) {
  outcome.className = "outcome muted";
  outcome.textContent = doing;
  try {
    await action();
  } catch (error) {
    if (error instanceof NeedsSignIn) return signInPage(error.message);
    outcome.className = "outcome error";
    outcome.textContent = error.message;
  }
}

/// Consecutive identical lines folded into one, with how many there were.
function foldLines(lines) {
  const folded = [];
  for (const line of lines) {
    const last = folded[folded.length - 1];
    if (last && last.line === line) last.count += 1;
    else folded.push({ line, count: 1 });
  }
  return folded.map(({ line, count }) => (count > 1 ? `${line}   (×${count})` : line));
}

function eventLogs(event) {
  const logs = event.data?.logs || [];
  return Array.isArray(logs) ? logs.map(String) : [];
}

// ---- signing in

function signInPage(message) {
  session = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.title = "Sign in · launchway";
  const input = el("input", {
    id: "token", type: "password", autocomplete: "off", placeholder: "lw_…", "aria-label": "token", required: true,
  });
  const outcome = outcomeLine();
  const form = el("form", {
    id: "sign-in",
    onsubmit: (event) => {
      event.preventDefault();
      act(outcome, "Signing in…", async () => {
        session = await api("/api/v1/session", {
          method: "POST", body: JSON.stringify({ token: input.value.trim() }),
        });
        route();
      });
    },
  },
  el("h1", {}, "Sign in"),
  message ? el("p", { class: "error" }, message) : null,
  el("p", {}, "Enter a launchway token (an admin creates one with ", el("code", {}, "launchway token create"),
    "). It becomes a session cookie this page's script cannot read."),
  el("label", { for: "token" }, "Token "), input, " ",
  el("button", { type: "submit" }, "Sign in"),
  outcome);
  show(form);
  input.focus();
}

async function signOut() {
  try {
    await api("/api/v1/session", { method: "DELETE" });
  } finally {
    signInPage("Signed out.");
  }
}

function showSession() {
  document.getElementById("nav").hidden = false;
  document.getElementById("nav-tokens").hidden = !can("admin");
  const who = document.getElementById("who");
  who.hidden = false;
  who.textContent = `${session.subject} (${session.role})`;
  document.getElementById("sign-out").hidden = false;
  for (const link of document.querySelectorAll("#nav a")) {
    const here = link.getAttribute("href") === "/" ? location.pathname === "/" : location.pathname.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// ---- the board: apps × environments

function boardCell(status) {
  if (!status) return el("td", { class: "muted" }, "—");
  const running = status.run ? "running" : "";
  return el("td", { "data-env": status.env, "data-health": status.health.state, "data-sync": status.sync, "data-running": running },
    el("a", { href: `/apps/${encodeURIComponent(status.app)}/${encodeURIComponent(status.env)}`, class: "cell" },
      healthLabel(status.health),
      el("span", { class: "muted" }, ` ${status.live_error ? "live state unknown" : status.health.summary}`),
      el("br"),
      status.release ? `release ${status.release}` : "not deployed",
      " · ",
      el("span", { class: `sync sync-${status.sync}` }, status.pinned_to ? `pinned to ${status.pinned_to}` : words(status.sync)),
      status.run ? [el("br"), el("span", { class: "running" }, `run ${status.run.id} `, stateLabel(status.run.state))] : null));
}

/// The board's data, asked for as the script starts on `/` (beside the session check)
/// rather than after it.
let boardData = location.pathname === "/" ? api("/api/v1/status?brief=true").catch(() => null) : null;

async function boardPage() {
  document.title = "Board · launchway";
  // The early answer once (null when it came before signing in), then fresh ones.
  const early = boardData ? await boardData : null;
  boardData = null;
  const statuses = early || (await api("/api/v1/status?brief=true"));
  performance.mark("board-data");
  const envs = [...new Set(statuses.map((status) => status.env))].sort();
  const apps = new Map();
  for (const status of statuses) {
    if (!apps.has(status.app)) apps.set(status.app, new Map());
    apps.get(status.app).set(status.env, status);
  }
  const names = [...apps.keys()].sort();
  const fragment = document.createDocumentFragment();
  const rows = names.map((name) => {
    const row = el("tr", { "data-app": name },
      el("th", { scope: "row" }, name),
      envs.map((env) => boardCell(apps.get(name).get(env))));
    fragment.append(row);
    return { name, row, statuses: [...apps.get(name).values()] };
  });
  const search = el("input", { id: "search", type: "search", placeholder: "app name", "aria-label": "search apps" });
  const option = (value, label) => el("option", { value }, label);
  const health = el("select", { id: "health-filter", "aria-label": "health" },
    option("", "any health"), ["healthy", "degraded", "progressing", "failed", "missing", "unknown"].map((h) => option(h, h)));
  const sync = el("select", { id: "sync-filter", "aria-label": "sync" },
    option("", "any sync"), option("out_of_sync", "out of sync"), option("pinned", "pinned"), option("in_sync", "in sync"),
    option("running", "a run in progress"));
  const count = el("p", { class: "muted", id: "board-count", role: "status" });
  const filter = () => {
    const query = search.value.trim().toLowerCase();
    let shown = 0;
    for (const { name, row, statuses: cells } of rows) {
      const matches = (!query || name.toLowerCase().includes(query))
        && (!health.value || cells.some((status) => status.health.state === health.value))
        && (!sync.value || cells.some((status) => (sync.value === "running" ? status.run : status.sync === sync.value)));
      row.hidden = !matches;
      if (matches) shown += 1;
    }
    count.textContent = `${shown} of ${rows.length} apps`;
  };
  search.addEventListener("input", filter);
  health.addEventListener("change", filter);
  sync.addEventListener("change", filter);
  const table = el("table", { id: "board", class: "board" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "app"), envs.map((env) => el("th", { scope: "col" }, env)))),
    el("tbody", {}, fragment));
  show(
    el("h1", {}, "Apps and environments"),
    el("div", { class: "filters" }, search, health, sync),
    count,
    statuses.length === 0 ? el("p", { class: "muted" }, "Nothing declared or deployed yet.") : table,
  );
  filter();
  // When the board was populated, for the benchmark (BENCHMARKS.md) and the curious.
  performance.mark("board-ready");
}

// ---- one app in one environment

function liveView(status) {
  const live = status.live;
  if (status.live_error) return el("p", { class: "error" }, `Live state unknown: ${status.live_error}`);
  if (!live) return el("p", { class: "muted" }, "Nothing runs there.");
  if (live.definition) {
    const definition = live.definition;
    return el("dl", { id: "live" },
      el("dt", {}, "task definition"), el("dd", {}, el("code", {}, definition.reference)),
      el("dt", {}, "status"), el("dd", {}, definition.status),
      definition.running !== undefined ? [el("dt", {}, "tasks"), el("dd", {}, `${definition.running} of ${definition.desired}`)] : null,
      el("dt", {}, "images"), el("dd", {}, Object.entries(definition.images).map(([name, image]) => el("div", {}, `${name}: ${image}`))),
      el("dt", {}, "steady"), el("dd", {}, definition.steady ? "yes" : "no"),
      definition.lifecycle ? [el("dt", {}, "lifecycle stage"), el("dd", { id: "lifecycle" }, lifecycleLine(definition.lifecycle))] : null,
      definition.deployments && definition.deployments.length > 0
        ? [el("dt", {}, "deployments"), el("dd", {}, deploymentsTable(definition.deployments))] : null);
  }
  if (live.replicas.length === 0) return el("p", { class: "muted" }, "No replicas.");
  return el("table", { id: "live" },
    el("thead", {}, el("tr", {}, ["replica", "state", "revision", "release", "restarts", "endpoints"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, live.replicas.map((replica) => el("tr", {},
      el("td", {}, replica.name),
      el("td", {}, replica.state.state === "running" ? "running" : `stopped${replica.state.exit_code !== null && replica.state.exit_code !== undefined ? ` (exit ${replica.state.exit_code})` : ""}`),
      el("td", {}, el("code", {}, replica.revision)),
      el("td", {}, replica.release_id ?? ""),
      el("td", {}, replica.restarts),
      el("td", { class: "muted" }, replica.endpoints.join(" "))))));
}

// ECS's own blue/green, canary or linear deployment, while one moves: "IN_PROGRESS at
// post_test_traffic_shift (paused), 0% of production traffic on web:7".
function lifecycleLine(lifecycle) {
  const paused = lifecycle.paused ? " (paused)" : "";
  const weight = lifecycle.production_weight !== undefined ? `, ${lifecycle.production_weight}% of production traffic` : "";
  const to = lifecycle.to ? ` on ${lifecycle.to}` : "";
  return `${lifecycle.status} at ${lifecycle.stage}${paused}${weight}${to}`;
}

function deploymentsTable(deployments) {
  return el("table", { id: "deployments" },
    el("thead", {}, el("tr", {}, ["deployment", "task definition", "rollout", "running", "pending", "desired", "started"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, deployments.map((deployment) => el("tr", {},
      el("td", {}, deployment.role),
      el("td", {}, el("code", {}, deployment.definition)),
      el("td", {}, deployment.rollout_state ?? ""),
      el("td", {}, deployment.running),
      el("td", {}, deployment.pending),
      el("td", {}, deployment.desired),
      el("td", { class: "muted" }, deployment.created_at ? new Date(deployment.created_at).toLocaleString() : "")))));
}

function rollbackControl(app, env, releaseId, outcome) {
  const reason = el("input", { type: "text", placeholder: "why (shown with the pin)", "aria-label": `reason for rolling back to release ${releaseId}` });
  const confirm = el("span", { class: "confirm", hidden: true },
    reason, " ",
    el("button", {
      type: "button", class: "danger", "data-confirm-rollback": releaseId,
      onclick: () => act(outcome, `Rolling back to release ${releaseId}…`, async () => {
        const run = await api("/api/v1/rollback", {
          method: "POST", body: JSON.stringify({ app, env, to: releaseId, reason: reason.value.trim() || null }),
        });
        location.assign(`/runs/${run.id}`);
      }),
    }, "Confirm rollback"));
  const open = el("button", {
    type: "button", "data-rollback": releaseId,
    onclick: () => { confirm.hidden = false; open.hidden = true; reason.focus(); },
  }, `Roll back to release ${releaseId}`);
  return el("span", {}, open, confirm);
}

async function appPage(app, env) {
  document.title = `${app} in ${env} · launchway`;
  const query = `app=${encodeURIComponent(app)}&env=${encodeURIComponent(env)}`;
  const [statuses, runs] = await Promise.all([api(`/api/v1/status?${query}`), api(`/api/v1/runs?${query}&limit=50`)]);
  const status = statuses.find((candidate) => candidate.app === app && candidate.env === env);
  if (!status) {
    show(el("h1", {}, `${app} in ${env}`), el("p", { class: "error" }, "No such app in that environment."));
    return;
  }
  const outcome = outcomeLine();
  const pin = status.deployment?.pin;
  const current = status.current_release;
  const verified = new Set();
  const history = runs.map((run) => {
    const mayReturn = can("deployer") && run.state === "succeeded" && run.kind !== "scheduled"
      && current && run.release_id !== current.id && !verified.has(run.release_id);
    if (run.state === "succeeded") verified.add(run.release_id);
    return el("tr", { "data-run": run.id },
      el("td", {}, el("a", { href: `/runs/${run.id}` }, run.id)),
      el("td", {}, run.kind),
      el("td", {}, stateLabel(run.state)),
      el("td", {}, run.release_id),
      el("td", {}, when(run.created_at)),
      el("td", {}, took(run.created_at, run.finished_at)),
      el("td", { class: "muted" }, run.reason || run.trigger),
      el("td", {}, mayReturn ? rollbackControl(app, env, run.release_id, outcome) : null));
  });
  const actions = [];
  if (can("deployer")) {
    actions.push(el("button", {
      type: "button", id: "sync-now",
      onclick: () => act(outcome, "Syncing…", async () => {
        const answer = await api("/api/v1/sync", { method: "POST", body: JSON.stringify({ env, apps: [app] }) });
        const started = (answer.runs || []).find((decision) => decision.run);
        outcome.className = "outcome";
        outcome.textContent = started ? `${words(started.decision)}: run ${started.run}` : (answer.runs || []).map((d) => words(d.decision)).join(", ") || "reconciling";
      }),
    }, "Sync now"));
    if (pin) {
      actions.push(el("button", {
        type: "button", id: "unpin",
        onclick: () => act(outcome, "Unpinning…", async () => {
          await api("/api/v1/unpin", { method: "POST", body: JSON.stringify({ app, env }) });
          route();
        }),
      }, "Unpin"));
    }
  }
  const last = runs[0];
  const logs = el("div", { id: "run-logs" }, el("p", { class: "muted" }, "Loading…"));
  const containerLogs = el("div", { id: "recent-logs" }, el("p", { class: "muted" }, "Loading…"));
  show(
    el("h1", {}, `${app} in ${env} `, healthLabel(status.health)),
    el("dl", {},
      el("dt", {}, "health"), el("dd", {}, status.live_error || status.health.summary),
      el("dt", {}, "sync"), el("dd", { id: "sync" }, pin ? `pinned to release ${pin.release_id} by ${pin.by}, ${when(pin.at)}${pin.reason ? `: ${pin.reason}` : ""}` : `${words(status.sync)}${status.sync_reason ? `: ${status.sync_reason}` : ""}`),
      el("dt", {}, "release"), el("dd", { id: "release" }, current ? `${current.id} (revision ${current.revision})` : "none"),
      current?.source?.commit ? [el("dt", {}, "commit"), el("dd", {}, el("code", {}, current.source.commit.slice(0, 12)), " ", current.source.summary || "", current.source.author ? ` by ${current.source.author}` : "")] : null,
      status.desired_revision ? [el("dt", {}, "the repo asks for"), el("dd", {}, el("code", {}, status.desired_revision))] : null),
    actions.length ? el("div", { class: "actions" }, actions) : null,
    outcome,
    el("h2", {}, "Live"),
    liveView(status),
    el("h2", {}, "History"),
    runs.length === 0 ? el("p", { class: "muted" }, "No runs yet.") : el("table", { id: "history" },
      el("thead", {}, el("tr", {}, ["run", "kind", "state", "release", "started", "took", "result", "actions"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, history)),
    el("h2", {}, "Recent logs"),
    containerLogs,
    el("h2", {}, "Logs of the last run"),
    logs,
  );
  api(`/api/v1/apps/${encodeURIComponent(app)}/${encodeURIComponent(env)}/logs?lines=100`).then((found) => {
    containerLogs.replaceChildren(...(found.length === 0
      ? [el("p", { class: "muted" }, "No containers run there.")]
      : found.map((container) => el("details", { open: true },
        el("summary", {}, container.container === container.replica ? container.replica : `${container.replica} · ${container.container}`,
          container.running ? "" : " (stopped)"),
        container.lines.length ? el("pre", {}, foldLines(container.lines).join("\n")) : el("p", { class: "muted" }, "Nothing written.")))));
  }, (error) => containerLogs.replaceChildren(el("p", { class: "muted" }, error.message)));
  if (!last) {
    logs.replaceChildren(el("p", { class: "muted" }, "No runs yet."));
    return;
  }
  const detail = await api(`/api/v1/runs/${last.id}`);
  const lines = detail.events.flatMap((event) => eventLogs(event));
  logs.replaceChildren(
    el("p", { class: "muted" }, `From run ${last.id}:`),
    lines.length ? el("pre", {}, foldLines(lines).join("\n")) : el("p", { class: "muted" }, "That run logged nothing."));
}

// ---- runs

async function runsPage() {
  document.title = "Runs · launchway";
  const params = new URLSearchParams(location.search);
  const filters = ["app", "env", "state"].filter((name) => params.get(name)).map((name) => `${name}=${encodeURIComponent(params.get(name))}`);
  const body = el("tbody", {});
  const more = el("button", { type: "button", id: "older" }, "Older runs");
  const outcome = outcomeLine();
  let oldest = null;
  const load = () => act(outcome, "Loading…", async () => {
    const page = await api(`/api/v1/runs?${[...filters, "limit=100", oldest ? `before=${oldest}` : ""].filter(Boolean).join("&")}`);
    for (const run of page) {
      body.append(el("tr", { "data-run": run.id },
        el("td", {}, el("a", { href: `/runs/${run.id}` }, run.id)),
        el("td", {}, el("a", { href: `/apps/${encodeURIComponent(run.app)}/${encodeURIComponent(run.env)}` }, run.app)),
        el("td", {}, run.env),
        el("td", {}, run.kind),
        el("td", {}, stateLabel(run.state)),
        el("td", {}, when(run.created_at)),
        el("td", {}, took(run.created_at, run.finished_at)),
        el("td", { class: "muted" }, run.reason || run.trigger)));
      oldest = run.id;
    }
    more.hidden = page.length < 100;
    outcome.textContent = "";
  });
  more.addEventListener("click", load);
  show(
    el("h1", {}, "Runs"),
    el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, ["run", "app", "environment", "kind", "state", "created", "took", "result"].map((h) => el("th", { scope: "col" }, h)))),
      body),
    outcome,
    more);
  await load();
}

/// The stages of a run, in order, each with how far it got.
function stagesOf(run, steps, approval) {
  const latest = new Map();
  for (const step of steps) latest.set(step.name, step);
  const finished = TERMINAL.has(run.state);
  const stage = (name, label = name) => {
    const step = latest.get(name);
    let status = "pending";
    if (step) status = step.outcome === "succeeded" ? "done" : step.outcome ? "failed" : "running";
    else if (finished) status = "skipped";
    return { name, label, status, detail: step?.detail || "", took: step ? took(step.started_at, step.finished_at) : "" };
  };
  const stages = [stage("validate")];
  // A run that builds images shows the build between validation and the plan.
  if (latest.has("build") || run.state === "building") stages.push(stage("build"));
  stages.push(stage("plan"));
  if (approval || run.state === "awaiting_approval") {
    let status = "waiting";
    if (approval?.decision === "approved") status = "done";
    else if (approval?.decision === "rejected") status = "failed";
    else if (finished) status = "skipped";
    stages.push({ name: "approve", label: "approve", status, detail: approval?.decided_by ? `${approval.decision} by ${approval.decided_by}` : "waiting for an approver", took: "" });
  }
  stages.push(stage("deploy"));
  for (const step of steps) {
    if (!["validate", "build", "plan", "deploy", "verify", "rollback"].includes(step.name) && !stages.some((known) => known.name === step.name)) {
      stages.push(stage(step.name));
    }
  }
  stages.push(stage("verify"));
  if (latest.has("rollback")) stages.push(stage("rollback", "roll back"));
  stages.push({
    name: "result", label: finished ? words(run.state) : "result",
    status: run.state === "succeeded" ? "done" : TERMINAL.has(run.state) ? "failed" : "pending", detail: run.reason || "", took: took(run.created_at, run.finished_at),
  });
  return stages;
}

/// The pipeline as a graph: one box per stage, joined left to right (what the source
/// teams saw in the Step Functions console).
function graphView(run, steps, approval) {
  const stages = stagesOf(run, steps, approval);
  const width = 132;
  const gap = 28;
  const height = 64;
  const total = stages.length * width + (stages.length - 1) * gap;
  const nodes = stages.map((stage, index) => {
    const x = index * (width + gap);
    const arrow = index === 0 ? null : svg("line", { x1: x - gap, y1: height / 2, x2: x - 4, y2: height / 2, class: "edge", "marker-end": "url(#arrow)" });
    return [arrow, svg("g", { class: `node node-${stage.status}`, "data-stage": stage.name, "data-status": stage.status },
      svg("title", {}, `${stage.label}: ${stage.status}${stage.detail ? ` — ${stage.detail}` : ""}`),
      svg("rect", { x, y: 2, width, height: height - 4, rx: 8 }),
      svg("text", { x: x + width / 2, y: 28, "text-anchor": "middle", class: "node-label" }, stage.label),
      svg("text", { x: x + width / 2, y: 46, "text-anchor": "middle", class: "node-status" }, stage.took ? `${stage.status} · ${stage.took}` : stage.status))];
  });
  return svg("svg", { viewBox: `0 0 ${total} ${height}`, width: total, height, role: "img", "aria-label": `pipeline: ${stages.map((s) => `${s.label} ${s.status}`).join(", ")}` },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "edge-head" }))),
    nodes);
}

function changeLine(change) {
  if (change.from !== null && change.from !== undefined && change.to !== null && change.to !== undefined) {
    return el("li", { class: "diff-change" }, `~ ${change.path}: ${change.from} → ${change.to}`);
  }
  if (change.to !== null && change.to !== undefined) return el("li", { class: "diff-add" }, `+ ${change.path}: ${change.to}`);
  return el("li", { class: "diff-remove" }, `- ${change.path}: ${change.from}`);
}

/// Images first, then the environment, then the rest.
function changeRank(change) {
  if (/(^|\.)image$|\.images\./.test(change.path)) return 0;
  if (/\.env\./.test(change.path)) return 1;
  return 2;
}

function planView(plan, eventLines) {
  if (!plan) return el("p", { class: "muted" }, "Not planned yet.");
  const defaults = new Set(plan.defaults || []);
  const written = (plan.changes || []).filter((change) => !defaults.has(change.path))
    .sort((a, b) => changeRank(a) - changeRank(b));
  const folded = (plan.changes || []).filter((change) => defaults.has(change.path));
  const symbol = { create: "+", update: "~", converge: "~", no_change: "=", unmanaged: "?" }[plan.action] || "~";
  return el("div", { class: "plan" },
    el("p", { class: `plan-heading plan-${plan.action}` }, `${symbol} ${plan.app}@${plan.env}: ${plan.summary}`),
    written.length ? el("ul", { class: "diff" }, written.map(changeLine))
      : eventLines.length ? el("ul", { class: "diff" }, eventLines.map((line) => el("li", {}, line))) : null,
    folded.length ? el("details", { class: "defaults" }, el("summary", {}, `${folded.length} setting${folded.length === 1 ? "" : "s"} at ${folded.length === 1 ? "its default" : "their defaults"}`),
      el("ul", { class: "diff" }, folded.map(changeLine))) : null);
}

function actionsView(detail, outcome) {
  const { run, approval } = detail;
  const buttons = [];
  if (run.state === "awaiting_approval" && can("approver")) {
    const comment = el("textarea", { id: "comment", placeholder: "Comment (optional)", "aria-label": "comment" });
    const decide = (verb) => act(outcome, verb === "approve" ? "Approving…" : "Rejecting…", async () => {
      await api(`/api/v1/runs/${run.id}/${verb}`, { method: "POST", body: JSON.stringify({ comment: comment.value }) });
      outcome.textContent = verb === "approve" ? "Approved." : "Rejected.";
    });
    return el("section", { class: "panel", id: "decision" },
      el("h2", {}, "Waiting for approval"),
      approval?.expires_at ? el("p", {}, `Expires ${when(approval.expires_at)}.`) : null,
      comment,
      el("div", { class: "actions" },
        el("button", { type: "button", class: "approve", id: "approve", onclick: () => decide("approve") }, "Approve"),
        el("button", { type: "button", class: "reject", id: "reject", onclick: () => decide("reject") }, "Reject")));
  }
  if (run.state === "progressing" && can("deployer")) {
    const control = (verb, label) => el("button", {
      type: "button", id: verb, class: verb === "abort" ? "danger" : null,
      onclick: () => act(outcome, `${label}…`, async () => {
        await api(`/api/v1/runs/${run.id}/${verb}`, { method: "POST", body: "{}" });
        outcome.textContent = `${label}: asked; the run acts on it within a moment.`;
      }),
    }, label);
    buttons.push(control("promote", "Promote"), control("abort", "Abort"));
  }
  if (run.state === "succeeded" && can("deployer") && run.kind !== "scheduled") {
    buttons.push(el("button", {
      type: "button", id: "roll-back", class: "danger",
      onclick: () => act(outcome, "Rolling back…", async () => {
        const rollback = await api("/api/v1/rollback", { method: "POST", body: JSON.stringify({ app: run.app, env: run.env, reason: `rolled back from run ${run.id}` }) });
        location.assign(`/runs/${rollback.id}`);
      }),
    }, "Roll back"));
  }
  if (approval?.decision) {
    buttons.push(el("p", { class: "muted" },
      `${approval.decision === "approved" ? "Approved" : "Rejected"} by ${approval.decided_by}, ${when(approval.decided_at)}`,
      approval.comment ? `: “${approval.comment}”` : ""));
  }
  return buttons.length ? el("div", { class: "actions", id: "run-actions" }, buttons) : el("div", { id: "run-actions" });
}

function stepsView(steps) {
  if (steps.length === 0) return el("p", { class: "muted" }, "None yet.");
  // A step shows its attempt only when it ran more than once (a resumed run).
  const runsOf = new Map();
  for (const step of steps) runsOf.set(step.name, (runsOf.get(step.name) || 0) + 1);
  const counted = new Map();
  return el("table", {},
    el("thead", {}, el("tr", {}, ["step", "outcome", "took", "detail"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, steps.map((step) => {
      const nth = (counted.get(step.name) || 0) + 1;
      counted.set(step.name, nth);
      return el("tr", {},
        el("td", {}, step.name, runsOf.get(step.name) > 1 ? el("span", { class: "muted" }, ` (try ${nth})`) : null),
        el("td", {}, step.outcome || "running"),
        el("td", {}, took(step.started_at, step.finished_at)),
        el("td", { class: "muted" }, step.detail || ""));
    })));
}

function eventRow(event) {
  const logs = eventLogs(event);
  return el("li", { "data-event": event.id, "data-kind": event.kind },
    el("span", { class: "muted" }, new Date(event.at).toLocaleTimeString()), " ",
    el("code", {}, event.kind), " ", event.message,
    logs.length ? el("pre", { class: "logs" }, foldLines(logs).join("\n")) : null);
}

async function runPage(id) {
  const detail = await api(`/api/v1/runs/${id}`);
  const head = el("div", { id: "run-head" });
  const graph = el("div", { id: "graph", class: "graph" });
  const outcome = outcomeLine();
  const actions = el("div", { id: "actions" });
  const plan = el("div", { id: "plan" });
  const steps = el("div", { id: "steps" });
  const events = el("ol", { id: "events", class: "events" });
  let lastEvent = 0;
  let planShown = null;
  const eventLines = () => detail.events.filter((event) => Array.isArray(event.data?.changes))
    .flatMap((event) => event.data.changes).filter((line, index, all) => all.indexOf(line) === index);

  // Only the parts that change are drawn again; what the reader opened or scrolled to
  // stays as it is.
  const draw = (fresh) => {
    const { run, release } = fresh;
    const source = release.source || {};
    document.title = `Run ${run.id} · ${run.app} → ${run.env} · launchway`;
    head.replaceChildren(
      el("h1", {}, `Run ${run.id}: ${fresh.kind || run.kind} of `,
        el("a", { href: `/apps/${encodeURIComponent(run.app)}/${encodeURIComponent(run.env)}` }, `${run.app} in ${run.env}`), " ", stateLabel(run.state)),
      el("dl", {},
        el("dt", {}, "trigger"), el("dd", {}, run.trigger),
        run.reason ? [el("dt", {}, "result"), el("dd", { id: "reason" }, run.reason)] : null,
        el("dt", {}, "release"), el("dd", {}, `${release.id} (revision ${release.revision})`),
        source.commit ? [el("dt", {}, "commit"), el("dd", {}, el("code", {}, source.commit.slice(0, 12)), " ", source.summary || "")] : null,
        source.author ? [el("dt", {}, "author"), el("dd", {}, source.author)] : null,
        source.origin ? [el("dt", {}, "origin"), el("dd", {}, source.origin)] : null,
        el("dt", {}, "started"), el("dd", {}, when(run.created_at)),
        run.finished_at ? [el("dt", {}, "took"), el("dd", {}, took(run.created_at, run.finished_at))] : null));
    graph.replaceChildren(graphView(run, fresh.steps, fresh.approval));
    actions.replaceChildren(actionsView(fresh, outcome));
    const planKey = JSON.stringify(run.plan);
    if (planKey !== planShown) {
      plan.replaceChildren(planView(run.plan, eventLines()));
      planShown = planKey;
    }
    steps.replaceChildren(stepsView(fresh.steps));
  };
  const append = (event) => {
    if (event.id <= lastEvent) return;
    lastEvent = event.id;
    events.append(eventRow(event));
  };
  draw(detail);
  detail.events.forEach(append);
  show(head, graph, actions, outcome,
    el("h2", {}, "Plan"), plan,
    el("h2", {}, "Steps"), steps,
    el("h2", {}, "Events and logs"), events);

  // Chat's Approve and Reject links land on their button.
  const wanted = location.hash.slice(1);
  if (wanted === "approve" || wanted === "reject") document.getElementById(wanted)?.focus();

  if (TERMINAL.has(detail.run.state)) return;
  // Live: the run's events as they are written; each one that moves the run redraws
  // the parts above (once per burst).
  let pending = null;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        const fresh = await api(`/api/v1/runs/${id}`);
        detail.events = fresh.events;
        draw(fresh);
      } catch (error) {
        if (error instanceof NeedsSignIn) signInPage(error.message);
      }
    }, 120);
  };
  const stream = new EventSource(`/api/v1/runs/${id}/events?after=${lastEvent}`);
  stream.addEventListener("event", (message) => {
    append(JSON.parse(message.data));
    refresh();
  });
  stream.addEventListener("end", () => {
    stream.close();
    refresh();
  });
}

// ---- audit, DORA, tokens

async function auditPage() {
  document.title = "Audit · launchway";
  const params = new URLSearchParams(location.search);
  const query = ["app", "env", "run"].filter((name) => params.get(name)).map((name) => `${name}=${encodeURIComponent(params.get(name))}`);
  const events = await api(`/api/v1/audit?${[...query, "limit=500"].join("&")}`);
  const app = el("input", { name: "app", placeholder: "app", value: params.get("app") || "", "aria-label": "app" });
  const env = el("input", { name: "env", placeholder: "environment", value: params.get("env") || "", "aria-label": "environment" });
  show(
    el("h1", {}, "Audit log"),
    el("form", { class: "filters", method: "get", action: "/audit" }, app, env, el("button", { type: "submit" }, "Filter")),
    events.length === 0 ? el("p", { class: "muted" }, "Nothing recorded yet.") : el("table", { id: "audit" },
      el("thead", {}, el("tr", {}, ["when", "kind", "run", "app", "environment", "what"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, events.slice().reverse().map((event) => el("tr", {},
        el("td", { class: "muted" }, when(event.at)),
        el("td", {}, el("code", {}, event.kind)),
        el("td", {}, event.run_id ? el("a", { href: `/runs/${event.run_id}` }, event.run_id) : ""),
        el("td", {}, event.app || ""),
        el("td", {}, event.env || ""),
        el("td", {}, event.message))))));
}

/// A horizontal bar chart: one bar per (app, environment).
function barChart(title, rows, value, format) {
  const rowHeight = 22;
  const labelWidth = 220;
  const barWidth = 360;
  const values = rows.map(value).filter((v) => v !== null && v !== undefined);
  const max = Math.max(...values, 0) || 1;
  const height = rows.length * rowHeight + 8;
  return el("figure", { class: "chart" },
    el("figcaption", {}, title),
    svg("svg", { viewBox: `0 0 ${labelWidth + barWidth + 90} ${height}`, width: labelWidth + barWidth + 90, height, role: "img", "aria-label": title },
      rows.map((row, index) => {
        const y = index * rowHeight + 4;
        const v = value(row);
        const width = v === null || v === undefined ? 0 : Math.max(2, (v / max) * barWidth);
        return svg("g", {},
          svg("text", { x: labelWidth - 8, y: y + 14, "text-anchor": "end", class: "chart-label" }, `${row.app} in ${row.env}`),
          svg("rect", { x: labelWidth, y, width, height: rowHeight - 6, class: "bar" }),
          svg("text", { x: labelWidth + width + 6, y: y + 14, class: "chart-value" }, v === null || v === undefined ? "—" : format(v)));
      })));
}

function seconds(value) {
  if (value < 90) return `${Math.round(value)} s`;
  if (value < 5400) return `${Math.round(value / 60)} min`;
  if (value < 172800) return `${(value / 3600).toFixed(1)} h`;
  return `${(value / 86400).toFixed(1)} d`;
}

async function doraPage() {
  document.title = "DORA · launchway";
  const days = Number(new URLSearchParams(location.search).get("days")) || 30;
  const figures = await api(`/api/v1/dora?days=${days}`);
  show(
    el("h1", {}, `DORA metrics, the last ${days} days`),
    figures.length === 0 ? el("p", { class: "muted" }, "No runs in that window.") : el("div", { id: "dora", class: "charts" },
      barChart("Deployments per day", figures, (f) => f.deployments_per_day, (v) => v.toFixed(2)),
      barChart("Lead time (median, commit to verified)", figures, (f) => f.lead_time_median_s, seconds),
      barChart("Change failure rate", figures, (f) => f.change_failure_rate, (v) => `${Math.round(v * 100)} %`),
      barChart("Time to restore (median)", figures, (f) => f.time_to_restore_median_s, seconds)));
}

async function tokensPage() {
  document.title = "Tokens · launchway";
  if (!can("admin")) {
    show(el("h1", {}, "Tokens"), el("p", { class: "error" }, "Only an admin token may manage tokens."));
    return;
  }
  const tokens = await api("/api/v1/tokens");
  const outcome = outcomeLine();
  const field = (name, label, attributes = {}) => el("label", {}, `${label} `, el("input", { name, ...attributes }));
  const role = el("select", { name: "role", "aria-label": "role" }, [...ROLES, "ci-publisher"].map((r) => el("option", { value: r }, r)));
  const secret = el("div", { id: "new-secret" });
  const form = el("form", {
    class: "token-form",
    onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const list = (name) => String(data.get(name) || "").split(",").map((item) => item.trim()).filter(Boolean);
      act(outcome, "Creating…", async () => {
        const issued = await api("/api/v1/tokens", {
          method: "POST",
          body: JSON.stringify({ name: data.get("name"), subject: data.get("subject"), role: data.get("role"), apps: list("apps"), envs: list("envs") }),
        });
        outcome.textContent = "";
        secret.replaceChildren(el("p", { class: "panel" }, `Token ${issued.token.id} for ${issued.token.subject}: `,
          el("code", {}, issued.secret), el("br"), "It is shown this once; copy it now."));
      });
    },
  },
  field("name", "name", { required: true, placeholder: "alice's laptop" }),
  field("subject", "subject", { required: true, placeholder: "alice@example.com" }),
  el("label", {}, "role ", role),
  field("apps", "apps", { placeholder: "for ci-publisher: web, api" }),
  field("envs", "environments", { placeholder: "for ci-publisher: stg" }),
  el("button", { type: "submit" }, "Create token"));
  show(
    el("h1", {}, "Tokens"),
    el("table", { id: "tokens" },
      el("thead", {}, el("tr", {}, ["id", "name", "subject", "role", "scope", "created", "last used", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, tokens.map((token) => el("tr", { "data-token": token.id },
        el("td", {}, el("code", {}, token.id)),
        el("td", {}, token.name),
        el("td", {}, token.subject),
        el("td", {}, token.role),
        el("td", { class: "muted" }, [...token.apps, ...token.envs].join(", ")),
        el("td", {}, when(token.created_at)),
        el("td", {}, when(token.last_used_at)),
        el("td", {}, token.revoked_at ? el("span", { class: "muted" }, `revoked ${when(token.revoked_at)}`)
          : el("button", {
            type: "button", class: "danger",
            onclick: () => act(outcome, "Revoking…", async () => {
              await api(`/api/v1/tokens/${token.id}`, { method: "DELETE" });
              route();
            }),
          }, "Revoke")))))),
    outcome,
    el("h2", {}, "New token"),
    form,
    secret);
}

// ---- routing

async function route() {
  try {
    if (!session) session = await api("/api/v1/session");
    showSession();
    const path = location.pathname;
    let match;
    if ((match = path.match(/^\/runs\/(\d+)$/))) await runPage(match[1]);
    else if (path === "/runs") await runsPage();
    else if ((match = path.match(/^\/apps\/([^/]+)\/([^/]+)$/))) await appPage(decodeURIComponent(match[1]), decodeURIComponent(match[2]));
    else if (path === "/audit") await auditPage();
    else if (path === "/dora") await doraPage();
    else if (path === "/tokens") await tokensPage();
    else await boardPage();
  } catch (error) {
    if (error instanceof NeedsSignIn) return signInPage(session ? error.message : "");
    show(el("p", { class: "error" }, error.message));
  }
}

document.getElementById("sign-out").addEventListener("click", signOut);
// Tokens were kept in localStorage before sessions existed; none is kept any more.
localStorage.removeItem("launchway.token");
route();
