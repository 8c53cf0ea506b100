// launchway's web page: the recent runs at `/`, one run at `/runs/ID` (where chat
// messages link, to approve or reject). Everything comes from the JSON API with the
// token the user pastes, kept in this browser's localStorage. Data is only ever put in
// the page as text (never parsed as HTML), and the server's Content-Security-Policy
// allows no script but this file.

const TOKEN_KEY = "launchway.token";
const TERMINAL = new Set(["succeeded", "failed", "rolled_back", "rejected"]);
const REFRESH_MS = 2000;

const main = document.getElementById("main");
const forget = document.getElementById("forget");
let refreshTimer = null;

class NeedsToken extends Error {}

/// Builds an element: `el("td", {class: "x"}, "text", child)`.
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

async function api(path, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) throw new NeedsToken("");
  const response = await fetch(path, {
    ...options,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new NeedsToken(body.error || "The server refused the token.");
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function duration(from, to) {
  if (!from || !to) return "";
  const seconds = (to - from) / 1000;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function stateLabel(state) {
  return el("span", { class: `state state-${state}` }, state.replaceAll("_", " "));
}

function show(...children) {
  main.replaceChildren(...children);
}

function askForToken(message) {
  forget.hidden = true;
  const input = el("input", { type: "password", autocomplete: "off", placeholder: "lw_…", "aria-label": "token" });
  const form = el(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        if (input.value.trim()) {
          localStorage.setItem(TOKEN_KEY, input.value.trim());
          route();
        }
      },
    },
    el("h1", {}, "Sign in with a token"),
    message ? el("p", { class: "error" }, message) : null,
    el("p", {}, "Paste a launchway token (an admin creates one with ", el("code", {}, "launchway token create"),
      "). It is kept in this browser only."),
    input,
    " ",
    el("button", { type: "submit" }, "Continue"),
  );
  show(form);
  input.focus();
}

/// Lifts a pin, then shows the page again (the server deploys the repo's state).
async function unpin(app, env, outcome) {
  outcome.className = "muted";
  outcome.textContent = "Unpinning…";
  try {
    await api("/api/v1/unpin", { method: "POST", body: JSON.stringify({ app, env }) });
    route();
  } catch (error) {
    if (error instanceof NeedsToken) return askForToken(error.message);
    outcome.className = "error";
    outcome.textContent = error.message;
  }
}

/// Health and sync of every app, as the server sees them now; pins with who, when, why.
function appsTable(statuses) {
  if (statuses.length === 0) return el("p", { class: "muted" }, "Nothing deployed yet.");
  const rows = statuses.map((status) => {
    const pin = status.deployment?.pin;
    const outcome = el("span", { role: "status" });
    const sync = pin
      ? [el("span", { class: "sync-pinned" }, `pinned to release ${pin.release_id}`),
        el("div", { class: "muted" }, `by ${pin.by}, ${when(pin.at)}${pin.reason ? `: ${pin.reason}` : ""}`),
        el("button", { type: "button", onclick: () => unpin(status.app, status.env, outcome) }, "Unpin"), " ", outcome]
      : status.sync.replaceAll("_", " ");
    return el("tr", {},
      el("td", {}, status.app),
      el("td", {}, status.env),
      el("td", {}, el("span", { class: `health health-${status.health.state}` }, status.health.state)),
      el("td", { class: "muted" }, status.live_error || status.health.summary),
      el("td", {}, sync),
      el("td", {}, status.current_release ? status.current_release.id : ""));
  });
  return el("table", {},
    el("thead", {}, el("tr", {}, ["app", "environment", "health", "", "sync", "release"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

async function runsPage() {
  document.title = "Runs · launchway";
  const [runs, statuses] = await Promise.all([api("/api/v1/runs?limit=100"), api("/api/v1/status")]);
  const rows = runs.map((run) =>
    el("tr", {},
      el("td", {}, el("a", { href: `/runs/${run.id}` }, run.id)),
      el("td", {}, run.app),
      el("td", {}, run.env),
      el("td", {}, run.kind),
      el("td", {}, stateLabel(run.state)),
      el("td", {}, when(run.created_at)),
      el("td", { class: "muted" }, run.reason || run.trigger),
    ));
  show(
    el("h1", {}, "Apps"),
    appsTable(statuses),
    el("h1", {}, "Runs"),
    runs.length === 0
      ? el("p", { class: "muted" }, "No runs yet.")
      : el("table", {},
        el("thead", {}, el("tr", {}, ["run", "app", "environment", "kind", "state", "created", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)),
  );
  return true;
}

function approvalPanel(run, approval) {
  if (!approval) return null;
  if (approval.decision) {
    return el("p", {},
      `${approval.decision === "approved" ? "Approved" : "Rejected"} by ${approval.decided_by} at ${when(approval.decided_at)}`,
      approval.comment ? `: “${approval.comment}”` : "");
  }
  if (run.state !== "awaiting_approval") return null;
  const comment = el("textarea", { placeholder: "Comment (optional)", "aria-label": "comment" });
  const outcome = el("p", { role: "status" });
  const decide = async (verb) => {
    outcome.className = "muted";
    outcome.textContent = `${verb === "approve" ? "Approving" : "Rejecting"}…`;
    try {
      await api(`/api/v1/runs/${run.id}/${verb}`, { method: "POST", body: JSON.stringify({ comment: comment.value }) });
      route();
    } catch (error) {
      if (error instanceof NeedsToken) return askForToken(error.message);
      outcome.className = "error";
      outcome.textContent = error.message;
    }
  };
  return el("section", { class: "panel" },
    el("h2", {}, "Waiting for approval"),
    approval.expires_at ? el("p", {}, `Expires ${when(approval.expires_at)}.`) : null,
    comment,
    el("div", { class: "actions" },
      el("button", { type: "button", class: "approve", onclick: () => decide("approve") }, "Approve"),
      el("button", { type: "button", class: "reject", onclick: () => decide("reject") }, "Reject")),
    outcome);
}

async function runPage(id) {
  const { run, release, approval, steps, events } = await api(`/api/v1/runs/${id}`);
  document.title = `Run ${run.id} · ${run.app} → ${run.env} · launchway`;
  const source = release.source || {};
  const changes = events
    .filter((event) => Array.isArray(event.data?.changes))
    .flatMap((event) => event.data.changes)
    .filter((line, index, all) => all.indexOf(line) === index);
  show(
    el("h1", {}, `Run ${run.id}: ${run.app} → ${run.env} `, stateLabel(run.state)),
    approvalPanel(run, approval),
    el("dl", {},
      el("dt", {}, "kind"), el("dd", {}, run.kind),
      el("dt", {}, "trigger"), el("dd", {}, run.trigger),
      run.reason ? [el("dt", {}, "reason"), el("dd", {}, run.reason)] : null,
      el("dt", {}, "release"), el("dd", {}, `${release.id} (revision ${release.revision})`),
      source.commit ? [el("dt", {}, "commit"), el("dd", {}, el("code", {}, source.commit.slice(0, 12)), " ", source.summary || "")] : null,
      source.author ? [el("dt", {}, "author"), el("dd", {}, source.author)] : null,
      source.origin ? [el("dt", {}, "origin"), el("dd", {}, source.origin)] : null,
      el("dt", {}, "created"), el("dd", {}, when(run.created_at)),
    ),
    el("h2", {}, "Plan"),
    el("p", {}, run.plan?.summary || "Not planned yet."),
    changes.length ? el("ul", {}, changes.map((line) => el("li", {}, line))) : null,
    run.plan ? el("details", {}, el("summary", {}, "The whole plan"), el("pre", {}, JSON.stringify(run.plan, null, 2))) : null,
    el("h2", {}, "Steps"),
    steps.length === 0
      ? el("p", { class: "muted" }, "None yet.")
      : el("table", {},
        el("thead", {}, el("tr", {}, ["step", "attempt", "outcome", "took", "detail"].map((h) => el("th", {}, h)))),
        el("tbody", {}, steps.map((step) =>
          el("tr", {},
            el("td", {}, step.name),
            el("td", {}, step.attempt),
            el("td", {}, step.outcome || "running"),
            el("td", {}, duration(step.started_at, step.finished_at)),
            el("td", { class: "muted" }, step.detail || ""))))),
    el("h2", {}, "Events"),
    el("table", {},
      el("tbody", {}, events.map((event) =>
        el("tr", {},
          el("td", { class: "muted" }, when(event.at)),
          el("td", {}, event.kind),
          el("td", {}, event.message))))),
  );
  // A run under way is looked at again; a finished or parked one is left alone.
  return !TERMINAL.has(run.state) && run.state !== "awaiting_approval";
}

async function route() {
  clearTimeout(refreshTimer);
  const match = location.pathname.match(/^\/runs\/(\d+)$/);
  try {
    const keepLooking = match ? await runPage(match[1]) : await runsPage();
    forget.hidden = false;
    if (keepLooking) refreshTimer = setTimeout(route, REFRESH_MS);
  } catch (error) {
    if (error instanceof NeedsToken) return askForToken(error.message);
    show(el("p", { class: "error" }, error.message));
  }
}

forget.addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  askForToken("");
});

route();
