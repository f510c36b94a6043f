// The fleet dashboard's page: reads /dashboard/api with the session cookie and shows it.
//
// Everything shown comes from nodes, scripts and signers, so it enters the page as text nodes
// (el() below, textContent), never as markup. Lists are polled every REFRESH_MS; the open
// deployment is followed through its server-sent events until it ends. The page links to a node
// or a deployment by the location's hash (#node/ID, #deployment/ID).
"use strict";

const REFRESH_MS = 2000;
const STATES = new Set([
  "online", "degraded", "offline", "active", "cordoned", "draining", "ok",
  "pending", "dispatched", "running", "unknown", "succeeded", "failed", "canceled", "moved",
  "queued", "started", "finished", "timed_out", "lost", "installed", "rolled_back", "refused",
]);

let timer = null;
let events = null;  // the open deployment's EventSource
let openNode = null;
let openDeployment = null;

// -- building the page, as text -------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "className") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(state) {
  const known = STATES.has(state) ? "state-" + state : "";
  return el("span", { className: "badge " + known }, state);
}

function fill(table, rows, empty) {
  const body = document.querySelector(table + " tbody");
  const columns = document.querySelectorAll(table + " thead th").length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: columns, className: "muted" }, empty))]));
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

// -- formats --------------------------------------------------------------------------------

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const gib = n / 2 ** 30;
  return gib >= 1 ? gib.toFixed(1) + " GiB" : (n / 2 ** 20).toFixed(0) + " MiB";
}

function usage(u) {
  return u ? `${u.vcpus} vCPU, ${bytes(u.memory)}, ${bytes(u.disk)} disk` : "?";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "?";
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m ${seconds % 60}s` : `${seconds}s`;
}

function ago(epochSeconds) {
  return epochSeconds ? duration(Date.now() / 1000 - epochSeconds) + " ago" : "never";
}

function when(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : "";
}

function short(key) {
  return key && key.length > 16 ? key.slice(0, 8) + "…" + key.slice(-4) : key || "";
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function progress(counts) {
  return Object.entries(counts || {}).filter(([, n]) => n > 0).map(([state, n]) => `${n} ${state}`).join(", ");
}

function taskError(error) {
  if (!error) return "";
  return `${error.reason}: ${error.message}` + (error.line ? ` (line ${error.line})` : "");
}

// -- talking to coord -----------------------------------------------------------------------

class SignedOut extends Error {}

async function read(path) {
  const response = await fetch("/dashboard/api/" + path, { headers: { accept: "application/json" }, credentials: "same-origin" });
  if (response.status === 401) throw new SignedOut();
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body && body.message ? `${body.reason}: ${body.message}` : `coord answered ${response.status}`);
  }
  return body;
}

function showSignIn(message) {
  clearInterval(timer);
  timer = null;
  closeEvents();
  document.getElementById("board").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  text("summary", "");
  text("sign-in-error", message || "");
}

function showBoard() {
  document.getElementById("sign-in").hidden = true;
  document.getElementById("board").hidden = false;
  document.getElementById("sign-out").hidden = false;
  refresh();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
  route();
}

async function signIn(event) {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  const response = await fetch("/dashboard/session", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }), credentials: "same-origin",
  });
  if (response.status === 204) {
    document.getElementById("token").value = "";
    showBoard();
    return;
  }
  const body = await response.json().catch(() => null);
  text("sign-in-error", body && body.message ? body.message : `coord answered ${response.status}`);
}

async function signOut() {
  await fetch("/dashboard/session", { method: "DELETE", credentials: "same-origin" });
  location.hash = "";
  showSignIn("Signed out.");
}

// -- the lists ------------------------------------------------------------------------------

async function refresh() {
  try {
    const [nodes, deployments, failures] = await Promise.all([read("nodes"), read("deployments?limit=30"), read("failures")]);
    showNodes(nodes);
    showDeployments(deployments);
    showFailures(failures);
    if (openNode) await showNode(openNode);
    text("board-error", "");
  } catch (error) {
    if (error instanceof SignedOut) showSignIn("Your session ended: sign in again.");
    else text("board-error", "Could not read the fleet: " + error.message);
  }
}

function showNodes(nodes) {
  const count = state => nodes.filter(n => n.status === state).length;
  const summary = `${plural(nodes.length, "node")}: ${count("online")} online, ${count("degraded")} degraded, ${count("offline")} offline`;
  document.getElementById("summary").dataset.nodes = summary;
  fill("#nodes", nodes.map(n => {
    const failing = Object.entries(n.health || {}).filter(([, ok]) => !ok).map(([part]) => part);
    const health = n.health ? (failing.length ? "failing: " + failing.join(", ") : "ok") : "not reported";
    const update = n.update ? `${n.update.version} ${n.update.result}` + (n.update.reason ? ` (${n.update.reason})` : "") : "";
    return el("tr", { className: "clickable" + (n.node_id === openNode ? " selected" : ""),
                      dataset: { node: n.node_id, status: n.status }, onclick: () => { location.hash = "node/" + n.node_id; } },
      el("td", { className: "mono" }, n.node_id, el("div", { className: "muted" }, n.farm)),
      el("td", {}, badge(n.status)),
      el("td", { className: failing.length ? "state-failed" : "" }, health),
      el("td", {}, n.version),
      el("td", {}, usage(n.capacity)),
      el("td", {}, usage(n.free)),
      el("td", {}, duration(n.last_uptime), n.restarts ? el("div", { className: "muted" }, plural(n.restarts, "restart")) : null),
      el("td", {}, ago(n.last_report_at)),
      el("td", {}, badge(n.schedule)),
      el("td", {}, update));
  }), "No node has registered with the ledger.");
  showSummary();
}

function showDeployments(deployments) {
  const inFlight = deployments.filter(d => d.status === "pending" || d.status === "running").length;
  document.getElementById("summary").dataset.deployments = `${plural(inFlight, "deployment")} in flight`;
  fill("#deployments", deployments.map(d =>
    el("tr", { className: "clickable" + (d.id === openDeployment ? " selected" : ""),
               dataset: { deployment: d.id, status: d.status }, onclick: () => { location.hash = "deployment/" + d.id; } },
      el("td", { className: "mono" }, d.id),
      el("td", { className: "mono", title: d.signer }, short(d.signer)),
      el("td", {}, when(d.created)),
      el("td", {}, badge(d.status)),
      el("td", {}, progress(d.counts)))), "No deployment yet.");
  showSummary();
}

function showSummary() {
  const data = document.getElementById("summary").dataset;
  text("summary", [data.nodes, data.deployments].filter(Boolean).join(" · "));
}

function showFailures(failures) {
  fill("#failures", failures.map(f =>
    el("tr", { className: "clickable", dataset: { deployment: f.deployment, node: f.node },
               onclick: () => { location.hash = "deployment/" + f.deployment; } },
      el("td", {}, when(f.created)),
      el("td", { className: "mono" }, f.deployment),
      el("td", { className: "mono" }, f.node),
      el("td", {}, f.reason),
      el("td", {}, f.message + (f.line ? ` (line ${f.line})` : "")))), "Nothing failed lately.");
}

// -- a node ---------------------------------------------------------------------------------

async function showNode(nodeId) {
  const panel = await read("nodes/" + encodeURIComponent(nodeId));
  if (openNode !== nodeId) return;  // closed or another opened meanwhile
  document.getElementById("node-panel").hidden = false;
  text("node-title", nodeId);
  const node = panel.node, supervisor = panel.supervisor;
  const uptime = [node.uptime_24h, node.uptime_30d].map(u => (u === null || u === undefined) ? "?" : u.toFixed(1) + "%");  // the ledger's percentages
  text("node-supervisor", supervisor.reachable
    ? `Supervisor ${supervisor.status || "?"}, version ${supervisor.version || "?"}, rights ${supervisor.rights || "?"}; `
      + `proven uptime ${uptime[0]} (24 h), ${uptime[1]} (30 d)`
    : `Supervisor not reachable: ${supervisor.error}`);
  const pool = supervisor.runners;
  const runners = document.getElementById("node-runners");
  runners.textContent = pool
    ? `Runner pool: ${plural(pool.registered, "runner")}, ${plural(pool.running, "job")} running, ${pool.queued} queued`
    : "Runner pool: unknown" + (node.health && "runners" in node.health ? ` (the ledger says runners ${node.health.runners ? "ok" : "failing"})` : "");
  Object.assign(runners.dataset, pool ? { registered: pool.registered, running: pool.running, queued: pool.queued } : {});
  text("node-jobs-error", supervisor.jobs_error || "");
  fill("#node-jobs", (supervisor.jobs || []).map(job =>
    el("tr", { dataset: { job: job.id, status: job.status } },
      el("td", { className: "mono" }, job.id),
      el("td", {}, badge(job.status)),
      el("td", { className: "mono", title: job.signer || "" }, short(job.signer)),
      el("td", {}, job.enqueued_at ? new Date(job.enqueued_at).toLocaleString() : ""),
      el("td", {}, job.duration === null || job.duration === undefined ? "" : job.duration.toFixed(2) + " s"),
      el("td", {}, job.error ? `${job.error.type}: ${job.error.message}` : ""))), "No job on this node.");
  fill("#node-tasks", panel.tasks.map(t =>
    el("tr", { className: "clickable", dataset: { deployment: t.deployment, state: t.task.state },
               onclick: () => { location.hash = "deployment/" + t.deployment; } },
      el("td", { className: "mono" }, t.deployment),
      el("td", {}, badge(t.task.state)),
      el("td", { className: "mono" }, t.task.job_id || ""),
      el("td", {}, String(t.task.attempts)),
      el("td", {}, taskError(t.task.error)))), "Coord gave this node nothing lately.");
}

// -- a deployment ---------------------------------------------------------------------------

function closeEvents() {
  if (events) events.close();
  events = null;
}

function showDeployment(d) {
  if (openDeployment !== d.id) return;
  document.getElementById("deployment-panel").hidden = false;
  text("deployment-title", d.id);
  const summary = document.getElementById("deployment-summary");
  summary.replaceChildren(badge(d.status), ` ${progress(d.counts)} · signed by `, el("span", { className: "mono" }, d.signer),
    ` · ${when(d.created)}` + (d.canceled_by ? ` · canceled by ${short(d.canceled_by)}` : ""));
  summary.dataset.status = d.status;
  fill("#deployment-tasks", (d.tasks || []).map(t =>
    el("tr", { dataset: { node: t.node, state: t.state } },
      el("td", { className: "mono" }, t.node),
      el("td", {}, badge(t.state)),
      el("td", { className: "mono" }, t.job_id || ""),
      el("td", {}, String(t.attempts)),
      el("td", { className: t.error ? "state-failed" : "" }, taskError(t.error)))), "No task.");
}

function followDeployment(id) {
  closeEvents();
  openDeployment = id;
  read("deployments/" + encodeURIComponent(id)).then(showDeployment).catch(error => {
    if (error instanceof SignedOut) showSignIn("Your session ended: sign in again.");
    else text("board-error", "Could not read the deployment: " + error.message);
  });
  const source = new EventSource("/dashboard/api/deployments/" + encodeURIComponent(id) + "/events");
  events = source;
  source.onmessage = message => {
    const d = JSON.parse(message.data);
    showDeployment(d);
    if (d.status !== "pending" && d.status !== "running") source.close();  // it ended: no reconnecting
  };
  source.onerror = () => { if (source.readyState === EventSource.CLOSED && events === source) events = null; };
}

// -- which panel is open: the location's hash -----------------------------------------------

function route() {
  const [kind, id] = decodeURIComponent(location.hash.slice(1)).split("/");
  if (kind === "node" && id) {
    openNode = id;
    showNode(id).catch(error => text("board-error", "Could not read the node: " + error.message));
  } else if (kind === "deployment" && id) {
    if (id !== openDeployment || !events) followDeployment(id);
  }
}

function closePanel(which) {
  if (which === "node") {
    openNode = null;
    document.getElementById("node-panel").hidden = true;
  } else {
    openDeployment = null;
    closeEvents();
    document.getElementById("deployment-panel").hidden = true;
  }
  history.replaceState(null, "", location.pathname);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("node-close").addEventListener("click", () => closePanel("node"));
  document.getElementById("deployment-close").addEventListener("click", () => closePanel("deployment"));
  window.addEventListener("hashchange", route);
  // Signed in already (the cookie is HttpOnly: asking is the only way to know)?
  read("nodes").then(showBoard).catch(error => showSignIn(error instanceof SignedOut ? "" : error.message));
});
