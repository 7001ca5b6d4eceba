// The live page at `/`: which agents are connected and watching, the annotated pages, and the
// annotations by status with their threads, kept up to date from two server-sent event streams:
// `/status/events` (the /status document, sent again whenever it changes) and `/events` (every
// annotation change). After a server restart both reconnect and the page reloads what it shows.
//
// Every piece of stored text reaches the page as a text node or an attribute value; nothing is
// ever parsed as markup.
"use strict";

const STATUSES = ["pending", "acknowledged", "resolved", "dismissed"];
const STATUS_WORD = { pending: "pending", acknowledged: "acknowledged", resolved: "resolved", dismissed: "dismissed" };
const MAX_SESSIONS = 100; // the newest pages whose annotations are loaded
const MAX_ACTIVITY = 20;
const RETRY_MS = [250, 500, 1000, 2000, 3000];
const FLASH_MS = 4000;

const state = {
  status: null, // the last /status document
  sessions: new Map(), // id -> session
  annotations: new Map(), // id -> annotation
  moreSessions: 0,
  loaded: false,
  filter: "",
  activity: [], // [{at, text}], newest first
  flashes: new Map(), // annotation id -> until (ms)
  openDetails: new Set(), // annotation ids whose details are open, kept when their card is rebuilt
  streams: { events: "connecting", status: "connecting" },
};

// --- DOM helpers -----------------------------------------------------------------------------

/** An element; `props` are attributes (`class`, `data-*`, ...), children are nodes or strings. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

/** A link to a page URL when it is http(s); otherwise the text alone. */
function pageLink(url, focusKey) {
  const text = url || "(no URL)";
  try {
    const parsed = new URL(url);
    if (parsed.protocol === "http:" || parsed.protocol === "https:") {
      return h("a", { href: parsed.href, "data-focus": focusKey, rel: "noreferrer", class: "url" }, text);
    }
  } catch {
    // not a URL: shown as text
  }
  return h("span", { class: "url" }, text);
}

function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function ago(date) {
  const seconds = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return date.toLocaleDateString();
}

/** A `<time>` that says how long ago, kept current by `refreshTimes`. */
function timeAgo(value, prefix = "") {
  const date = toDate(value);
  if (date === null) return null;
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString(), "data-prefix": prefix }, prefix + ago(date));
}

function refreshTimes() {
  for (const el of document.querySelectorAll("time[datetime]")) {
    el.textContent = (el.dataset.prefix || "") + ago(new Date(el.getAttribute("datetime")));
  }
}

/** Order of two ISO times (or any strings), as plain string order. */
function compare(a, b) {
  const x = String(a ?? "");
  const y = String(b ?? "");
  return x < y ? -1 : x > y ? 1 : 0;
}

function shorten(text, length = 80) {
  const flat = String(text ?? "").replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

/**
 * Make `list`'s children exactly `items` (elements, in order), moving only what moved, so a focused
 * control that stays keeps its focus.
 */
function syncChildren(list, items) {
  items.forEach((item, index) => {
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
  });
  while (list.children.length > items.length) list.lastElementChild.remove();
}

/** Elements rebuilt only when what they show changed: key -> {parts, el}, `parts` compared one by one. */
class Keyed {
  constructor() {
    this.cache = new Map();
  }
  get(key, parts, build) {
    const hit = this.cache.get(key);
    this.seen.add(key);
    if (hit && hit.parts.length === parts.length && hit.parts.every((part, i) => part === parts[i])) return hit.el;
    const el = build();
    this.cache.set(key, { parts, el });
    return el;
  }
  begin() {
    this.seen = new Set();
  }
  end() {
    for (const key of this.cache.keys()) if (!this.seen.has(key)) this.cache.delete(key);
  }
}

// --- rendering ----------------------------------------------------------------------------

const cards = new Keyed();
const sessionRows = new Keyed();
const agentItems = new Keyed();

let renderTimer = null;

/** Render once for a burst of events (a batch of annotations, a status change beside them). */
function scheduleRender() {
  if (renderTimer === null) {
    renderTimer = setTimeout(() => {
      renderTimer = null;
      render();
    }, 16);
  }
}

function render() {
  const focused = document.activeElement;
  const focusKey = focused && focused.dataset ? focused.dataset.focus : undefined;
  renderHeader();
  renderRefused();
  renderAgents();
  renderSessions();
  renderAnnotations();
  renderActivity();
  if (focusKey && !document.contains(focused)) {
    const again = document.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
}

function renderHeader() {
  const status = state.status;
  const parts = [];
  if (status && status.version) parts.push(`agentation-mcp ${status.version}`);
  if (status && status.store) parts.push(`store ${status.store}`);
  if (status && status.startedAt) parts.push(timeAgo(status.startedAt, "started "));
  $("server").replaceChildren(...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
  if (!parts.length) $("server").textContent = status ? `mode ${status.mode}` : "Loading…";

  const down = state.streams.events !== "open";
  const connection = $("connection");
  connection.dataset.state = down ? (state.loaded ? "reconnecting" : "connecting") : "live";
  connection.textContent = down ? (state.loaded ? "Reconnecting to the server…" : "Connecting…") : "Live";

  const pending = countBy((a) => a.status === "pending");
  document.title = pending ? `(${pending}) agentation` : "agentation";
}

function renderRefused() {
  const refused = state.status && Array.isArray(state.status.refusedOrigins) ? state.status.refusedOrigins : [];
  $("refused").hidden = refused.length === 0;
  $("refused-list").replaceChildren(
    ...refused.map((r) =>
      h(
        "li",
        { "data-origin": r.origin },
        h("code", {}, String(r.origin)),
        ` on ${r.path}, ${r.count === 1 ? "once" : `${r.count} times`}, last `,
        timeAgo(r.lastAt),
      ),
    ),
  );
}

function countBy(test) {
  let n = 0;
  for (const a of state.annotations.values()) if (test(a)) n++;
  return n;
}

function renderAgents() {
  const status = state.status || {};
  const agents = Array.isArray(status.agents) ? status.agents.slice() : [];
  agents.sort((a, b) => Number(Boolean(b.watching)) - Number(Boolean(a.watching)) || compare(a.connectedAt, b.connectedAt));
  $("agents-empty").hidden = agents.length > 0;
  agentItems.begin();
  const items = agents.map((agent) => {
    const key = `${agent.transport}:${agent.pid}:${agent.connectedAt}:${agent.client && agent.client.name}`;
    const watched = agent.watchingSessionId ? state.sessions.get(agent.watchingSessionId) : null;
    return agentItems.get(key, [JSON.stringify(agent), watched ? watched.url : null], () => agentItem(agent));
  });
  agentItems.end();
  syncChildren($("agent-list"), items);

  const processes = Array.isArray(status.processes) ? status.processes : [];
  $("processes").replaceChildren(
    ...(processes.length
      ? [
          `${processes.length === 1 ? "1 server process" : `${processes.length} server processes`} on this store: `,
          processes.map((p) => `pid ${p.pid}${p.ownsPort ? " (serves this page)" : ""}`).join(", "),
        ]
      : []),
  );
}

function agentItem(agent) {
  const client = agent.client || {};
  const name = client.name || "unnamed client";
  const watching = Boolean(agent.watching);
  let where = null;
  if (watching) {
    const session = agent.watchingSessionId ? state.sessions.get(agent.watchingSessionId) : null;
    where = agent.watchingSessionId ? `watching ${session ? session.url : agent.watchingSessionId}` : "watching every page";
  }
  return h(
    "li",
    { class: "agent", "data-agent": name, "data-watching": watching ? "true" : "false" },
    h("span", { class: `dot ${watching ? "dot-watching" : "dot-connected"}`, "aria-hidden": "true" }),
    h(
      "div",
      { class: "agent-body" },
      h("p", { class: "agent-title" }, h("strong", { class: "agent-name" }, name), client.version ? ` ${client.version}` : null, " ",
        h("span", { class: `badge ${watching ? "badge-watching" : "badge-connected"}` }, watching ? "watching now" : "connected")),
      h(
        "p",
        { class: "meta" },
        [agent.transport, agent.pid ? `pid ${agent.pid}` : null].filter(Boolean).join(" · "),
        agent.connectedAt ? " · " : null,
        timeAgo(agent.connectedAt, "connected "),
        agent.lastCallAt ? " · " : null,
        timeAgo(agent.lastCallAt, "last tool call "),
      ),
      where ? h("p", { class: "meta watching-where" }, where) : null,
    ),
  );
}

/** Session id -> {pending, acknowledged, resolved, dismissed}, in one pass over the annotations. */
function countsBySession() {
  const bySession = new Map();
  for (const a of state.annotations.values()) {
    let counts = bySession.get(a.sessionId);
    if (counts === undefined) {
      counts = { pending: 0, acknowledged: 0, resolved: 0, dismissed: 0 };
      bySession.set(a.sessionId, counts);
    }
    if (STATUSES.includes(a.status)) counts[a.status]++;
  }
  return bySession;
}

function pagesBySession() {
  const pages = state.status && Array.isArray(state.status.pages) ? state.status.pages : null;
  if (pages === null) return null;
  const map = new Map();
  for (const page of pages) map.set(page.sessionId, page);
  return map;
}

function renderSessions() {
  const sessions = [...state.sessions.values()].sort((a, b) => compare(b.createdAt, a.createdAt));
  const pages = pagesBySession();
  const empty = state.loaded && sessions.length === 0 && (pages === null || pages.size === 0);
  $("empty").hidden = !empty;
  $("sessions").hidden = empty;
  $("annotations").hidden = empty;

  const hint = $("sessions-hint");
  hint.hidden = !(state.loaded && pages !== null && pages.size === 0 && sessions.length > 0);
  hint.textContent = "No toolbar is connected right now.";

  sessionRows.begin();
  const allCounts = countsBySession();
  const none = { pending: 0, acknowledged: 0, resolved: 0, dismissed: 0 };
  const rows = sessions.map((session) => {
    const counts = allCounts.get(session.id) || none;
    const page = pages ? pages.get(session.id) : undefined;
    const parts = [session, ...STATUSES.map((s) => counts[s]), page ? JSON.stringify(page) : null];
    return sessionRows.get(session.id, parts, () => sessionRow(session, counts, page));
  });
  sessionRows.end();
  syncChildren($("session-rows"), rows);
  const more = $("sessions-more");
  more.hidden = state.moreSessions === 0;
  more.textContent = `${state.moreSessions} older pages are not shown.`;

  const select = $("session-filter");
  const options = [h("option", { value: "" }, "All pages"), ...sessions.map((s) => h("option", { value: s.id }, shorten(s.url || s.id, 60)))];
  const wanted = options.map((o) => `${o.value}\n${o.textContent}`).join("\n");
  if (select.dataset.options !== wanted) {
    select.replaceChildren(...options);
    select.dataset.options = wanted;
  }
  if (state.filter && !state.sessions.has(state.filter)) state.filter = "";
  select.value = state.filter;
}

function sessionRow(session, counts, page) {
  return h(
    "tr",
    { "data-session-id": session.id },
    h(
      "th",
      { scope: "row" },
      pageLink(session.url, `session:${session.id}`),
      page ? h("span", { class: "badge badge-connected toolbar-badge" }, "toolbar open") : null,
      h("button", { type: "button", class: "show", "data-focus": `show:${session.id}`, "data-session": session.id }, "Show"),
    ),
    STATUSES.map((s) => h("td", { class: `num count-${s}`, "data-count": s }, String(counts[s]))),
  );
}

function sortedFor(status) {
  const list = [...state.annotations.values()].filter((a) => a.status === status && (!state.filter || a.sessionId === state.filter));
  if (status === "pending") return list.sort((a, b) => compare(a.createdAt, b.createdAt));
  const changed = (a) => String(a.resolvedAt || a.updatedAt || a.createdAt);
  return list.sort((a, b) => compare(changed(b), changed(a)));
}

function renderAnnotations() {
  const now = Date.now();
  for (const [id, until] of state.flashes) if (until < now) state.flashes.delete(id);
  cards.begin();
  for (const status of STATUSES) {
    const list = sortedFor(status);
    $(`count-${status}`).textContent = String(list.length);
    const items = list.map((a) => {
      const session = state.sessions.get(a.sessionId);
      const flash = state.flashes.has(a.id);
      // An annotation is a new object whenever it changed (each event brings its own).
      return cards.get(a.id, [a, session ? session.url : null, flash], () => card(a, session, flash));
    });
    syncChildren($(`list-${status}`), items);
  }
  cards.end();
}

function card(a, session, flash) {
  const badges = [a.kind && a.kind !== "feedback" ? a.kind : null, a.intent, a.severity].filter(Boolean);
  const thread = Array.isArray(a.thread) ? a.thread : [];
  const details = [
    ["Id", a.id],
    ["Element path", a.elementPath],
    ["Source", a.sourceFile],
    ["Components", a.reactComponents],
    ["Page", a.url],
    ["Resolved by", a.resolvedBy],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  return h(
    "li",
    { class: `card${flash ? " flash" : ""}`, "data-annotation-id": a.id, "data-status": a.status },
    h(
      "article",
      { "aria-label": `${STATUS_WORD[a.status] || a.status}: ${shorten(a.comment, 60)}` },
      h(
        "p",
        { class: "card-head" },
        h("span", { class: `badge status-${a.status}` }, STATUS_WORD[a.status] || a.status),
        badges.map((b) => [" ", h("span", { class: "badge badge-plain" }, b)]),
        " ",
        h("span", { class: "element" }, a.element || ""),
        session ? [" on ", pageLink(session.url, `card-page:${a.id}`)] : null,
        " · ",
        timeAgo(a.createdAt),
      ),
      h("p", { class: "comment" }, a.comment || ""),
      a.selectedText ? h("blockquote", { class: "selected" }, shorten(a.selectedText, 300)) : null,
      thread.length
        ? h(
            "ol",
            { class: "thread", "aria-label": "Thread" },
            thread.map((m) =>
              h(
                "li",
                { class: `message role-${m.role === "agent" ? "agent" : "human"}`, "data-role": m.role },
                h("p", { class: "who" }, m.role === "agent" ? "Agent" : "You", " · ", timeAgo(m.timestamp)),
                h("p", { class: "content" }, m.content || ""),
              ),
            ),
          )
        : null,
      details.length
        ? h(
            "details",
            { class: "more", "data-annotation": a.id, open: state.openDetails.has(a.id) },
            h("summary", { "data-focus": `more:${a.id}` }, "Details"),
            h("dl", {}, details.map(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))])),
          )
        : null,
    ),
  );
}

function renderActivity() {
  $("activity-empty").hidden = state.activity.length > 0;
  const items = state.activity.map((entry) => {
    if (!entry.el) entry.el = h("li", {}, timeAgo(entry.at), " ", entry.text);
    return entry.el;
  });
  syncChildren($("activity-list"), items);
}

// --- changes ---------------------------------------------------------------------------------

function note(text) {
  state.activity.unshift({ at: new Date().toISOString(), text });
  state.activity.length = Math.min(state.activity.length, MAX_ACTIVITY);
  $("announce").textContent = text;
}

function quoted(a) {
  return `“${shorten(a.comment, 60)}”`;
}

/** When an annotation last changed, for choosing between a loaded copy and an event's. */
function changedAt(a) {
  return String(a.updatedAt || a.createdAt || "");
}

function upsertAnnotation(a, { buffered = false, quiet = false } = {}) {
  const old = state.annotations.get(a.id);
  if (buffered && old && changedAt(old) >= changedAt(a)) return;
  state.annotations.set(a.id, a);
  if (!state.sessions.has(a.sessionId)) learnSession(a.sessionId, a.url);
  if (quiet) return;
  if (!old) {
    note(`New annotation ${quoted(a)}.`);
    state.flashes.set(a.id, Date.now() + FLASH_MS);
    return;
  }
  if (old.status !== a.status) {
    note(`${quoted(a)}: ${STATUS_WORD[old.status] || old.status} → ${STATUS_WORD[a.status] || a.status}.`);
    state.flashes.set(a.id, Date.now() + FLASH_MS);
  }
  const before = Array.isArray(old.thread) ? old.thread.length : 0;
  const thread = Array.isArray(a.thread) ? a.thread : [];
  for (const m of thread.slice(before)) {
    if (m.role === "agent") note(`The agent replied to ${quoted(a)}: ${shorten(m.content, 80)}`);
  }
}

/** A session seen only through one of its annotations: shown at once, its details fetched. */
function learnSession(id, url) {
  state.sessions.set(id, { id, url: url || "", createdAt: "" });
  getJson(`/sessions/${encodeURIComponent(id)}`)
    .then((session) => {
      const { annotations, ...rest } = session;
      state.sessions.set(id, rest);
      scheduleRender();
    })
    .catch(() => {});
}

function applyEvent(event, buffered = false) {
  const payload = event.payload || {};
  switch (event.type) {
    case "session.created":
      if (!state.sessions.has(payload.id) || !state.sessions.get(payload.id).createdAt) {
        state.sessions.set(payload.id, payload);
        if (!buffered) note(`A toolbar opened a new page: ${shorten(payload.url, 80)}.`);
      }
      break;
    case "annotation.created":
    case "annotation.updated":
      upsertAnnotation(payload, { buffered });
      break;
    case "annotation.deleted": {
      const old = state.annotations.get(payload.id);
      if (old) {
        state.annotations.delete(payload.id);
        if (!buffered) note(`Deleted ${quoted(old)}.`);
      }
      break;
    }
    case "action.requested": {
      const session = state.sessions.get(event.sessionId);
      if (!buffered) note(`The toolbar sent ${session ? shorten(session.url, 60) : "a page"}'s annotations to the agent.`);
      break;
    }
    default:
      // thread.message: the annotation.updated before it carries the thread
      break;
  }
}

// --- loading and streams -------------------------------------------------------------------

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// Events that arrive while a snapshot loads wait for it, then apply where they are newer.
let buffer = null;

async function reload() {
  const mine = [];
  buffer = mine;
  try {
    const [status, sessions] = await Promise.all([getJson("/status"), getJson("/sessions")]);
    const shown = sessions.slice(0, MAX_SESSIONS);
    const full = await mapLimit(shown, 4, (s) => getJson(`/sessions/${encodeURIComponent(s.id)}`).catch(() => ({ ...s, annotations: [] })));
    if (buffer !== mine) return; // a newer reload took over
    buffer = null;
    const before = state.loaded ? state.annotations : null;
    state.sessions = new Map();
    state.annotations = new Map();
    for (const session of full) {
      const { annotations, ...rest } = session;
      state.sessions.set(rest.id, rest);
      for (const a of annotations || []) state.annotations.set(a.id, a);
    }
    // Back after a drop or a restart: what changed meanwhile is told as if it had just happened.
    if (before !== null) {
      for (const a of [...state.annotations.values()]) {
        const old = before.get(a.id);
        if (old === undefined || old.status !== a.status || changedAt(old) !== changedAt(a)) {
          state.annotations.delete(a.id);
          if (old !== undefined) state.annotations.set(a.id, old);
          upsertAnnotation(a);
        }
      }
    }
    state.moreSessions = sessions.length - shown.length;
    if (state.streams.status !== "open" || state.status === null) state.status = status;
    for (const event of mine) applyEvent(event, true);
    state.loaded = true;
    render();
  } catch {
    if (buffer !== mine) return;
    buffer = null;
    // A stream that broke reconnects and reloads by itself; one that stays open needs another try.
    setTimeout(() => {
      if (buffer === null && state.streams.events === "open") reload();
    }, RETRY_MS[RETRY_MS.length - 1]);
  }
}

/** An EventSource that reconnects on its own schedule, whatever ended it (a restart, a 404, a drop). */
function stream(path, name, { onOpen, onEvent }) {
  let attempt = 0;
  const connect = () => {
    const source = new EventSource(path);
    source.onopen = () => {
      attempt = 0;
      state.streams[name] = "open";
      onOpen();
    };
    source.onmessage = (e) => onEvent("message", e);
    for (const type of onEvent.types || []) source.addEventListener(type, (e) => onEvent(type, e));
    source.onerror = () => {
      source.close();
      const wasOpen = state.streams[name] === "open";
      state.streams[name] = "down";
      if (wasOpen) scheduleRender();
      setTimeout(connect, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]);
    };
  };
  connect();
}

function onAnnotationEvent(type, e) {
  let event;
  try {
    event = JSON.parse(e.data);
  } catch {
    return;
  }
  if (!event || typeof event !== "object" || typeof event.type !== "string") return;
  if (buffer !== null) {
    buffer.push(event);
    return;
  }
  applyEvent(event);
  scheduleRender();
}
onAnnotationEvent.types = ["session.created", "annotation.created", "annotation.updated", "annotation.deleted", "thread.message", "action.requested"];

function onStatusEvent(type, e) {
  try {
    const status = JSON.parse(e.data);
    if (status && typeof status === "object" && !Array.isArray(status)) state.status = status;
  } catch {
    return;
  }
  scheduleRender();
}
onStatusEvent.types = ["status"];

/** A collapsible group per status, each with its count and its list of cards. */
function buildGroups() {
  $("groups").replaceWith(
    ...STATUSES.map((status) =>
      h(
        "details",
        { class: "group", "data-status": status, open: true },
        h(
          "summary",
          {},
          h("span", { class: `badge status-${status}` }, status[0].toUpperCase() + status.slice(1)),
          " ",
          h("span", { class: "count", id: `count-${status}` }, "0"),
        ),
        h("ol", { class: "cards", id: `list-${status}` }),
      ),
    ),
  );
}

function start() {
  buildGroups();
  $("session-filter").addEventListener("change", (e) => {
    state.filter = e.target.value;
    render();
  });
  document.addEventListener(
    "toggle",
    (e) => {
      const id = e.target.dataset && e.target.dataset.annotation;
      if (id) e.target.open ? state.openDetails.add(id) : state.openDetails.delete(id);
    },
    true,
  );
  $("session-rows").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-session]");
    if (!button) return;
    state.filter = button.dataset.session;
    render();
    $("annotations").focus();
  });
  stream("/events", "events", { onOpen: reload, onEvent: onAnnotationEvent });
  stream("/status/events", "status", { onOpen: () => {}, onEvent: onStatusEvent });
  setInterval(() => {
    refreshTimes();
    if (state.flashes.size) render();
  }, 5000);
}

start();
