// Drives the real `agentation` toolbar in Debian's Chromium for the pytest e2e test.
//
//   node driver.mjs [--api-origin http://127.0.0.1:4747]
//
// Protocol: one JSON object per line on stdin, one JSON answer per line on
// stdout, in order. The first line printed is {"ok":true,"ready":true,...} once
// the browser is up. Every command answers {"ok":true,...} or
// {"ok":false,"error":"..."}; no command waits longer than its timeout
// (default 15 s, overridable per command with "timeoutMs"). End of stdin or
// {"cmd":"close"} closes the browser and exits.
//
// Commands (fields besides "cmd"):
//   open        {url}                      load the page, wait for the toolbar and its first session
//                                          call; answers {sessionId, sessionCall: {method, path, status}}
//   create      {selector, comment}        annotate mode -> click element -> type -> Add;
//                                          answers {serverId, sent, stored} from the toolbar's
//                                          own POST /sessions/:id/annotations and its response
//   edit        {serverId | index, comment} click marker -> replace text -> Save; waits for the PATCH
//   delete      {serverId | index}         click marker -> Delete; waits for the DELETE and the marker to go
//   activate    {}                         open the toolbar (markers show only while it is open)
//   markers     {}                         visible markers: [{index, label, id, comment, element}]
//   wait-marker-gone {serverId, timeoutMs} until no marker for that annotation is in the DOM
//   wait-marker {serverId, timeoutMs}      until a marker for that annotation is in the DOM
//   storage     {}                         the page's localStorage
//   requests    {clear?}                   requests the page sent to the API origin:
//                                          [{method, url, body, status, response, finished, error?}]
//   console     {}                         page console errors/warnings and page errors
//   screenshot  {path}
//   visit       {url}                      load any page (the server's own page at /), no toolbar expected
//   wait-dom    {selector, text?, attr?, value?, gone?, timeoutMs}
//                                          until an element matching `selector` (whose text contains
//                                          `text`, whose attribute `attr` is `value`) is in the DOM, or
//                                          with gone: until none is; answers {elapsedMs}
//   query       {selector}                 [{text, data: {data-* attributes}, tag}] of the matches
//   color-scheme {scheme}                  emulate prefers-color-scheme: "light" or "dark"
//   contrast    {selector}                 [{text, ratio}]: each match's text color against the
//                                          background it shows on (WCAG contrast ratio)
//   press       {key}                      a key press on the page (Tab, Enter, ...)
//   focused     {}                         the focused element: {tag, text, focus, outlineWidth}
//   close       {}
//
// Markers are tied to server ids through React itself: each marker button's
// fiber has the toolbar's AnnotationMarker component above it, whose
// `annotation` prop is the toolbar's state entry (its id is the server id once
// the create POST answered). localStorage `feedback-annotations-<pathname>` is
// the fallback, paired by marker number.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.AGENTATION_E2E_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const DEFAULT_TIMEOUT_MS = 15_000;
const ACTION_TIMEOUT_MS = 5_000;
const MARKER = "[data-annotation-marker]";
const POPUP = "[data-annotation-popup]";

const argv = process.argv.slice(2);
let apiOrigin = null;
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--api-origin") apiOrigin = argv[++i];
}

const userDataDir = mkdtempSync(path.join(tmpdir(), "agentation-e2e-chromium-"));
let context = null;
let page = null;
const requests = [];
const consoleLines = [];

function send(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function withTimeout(promise, ms, what) {
  promise.catch(() => {}); // if the timeout wins, a later rejection is expected, not unhandled
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise awaited later: if a step before that throws, its rejection must not crash the driver. */
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

async function sleep(ms) {
  await new Promise((r) => setTimeout(r, ms));
}

/** Poll `fn` until it returns a truthy value or `ms` runs out. */
async function until(fn, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(every);
  }
}

function isApi(url) {
  return apiOrigin !== null && url.startsWith(apiOrigin);
}

function parseJson(text) {
  if (text == null || text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function launch() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(ACTION_TIMEOUT_MS);
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") consoleLines.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  // Every request to the API origin (CORS preflights aside): method, url, body, then
  // status and JSON answer as they come. An SSE stream keeps `finished: false`.
  const entries = new Map();
  page.on("request", (req) => {
    if (!isApi(req.url()) || req.method() === "OPTIONS") return;
    const entry = { method: req.method(), url: req.url(), body: parseJson(req.postData()), status: null, finished: false };
    entries.set(req, entry);
    requests.push(entry);
  });
  page.on("response", (resp) => {
    const entry = entries.get(resp.request());
    if (entry) entry.status = resp.status();
  });
  page.on("requestfinished", async (req) => {
    const entry = entries.get(req);
    if (!entry) return;
    entries.delete(req);
    try {
      const resp = await req.response();
      if (resp && !(resp.headers()["content-type"] || "").includes("text/event-stream")) entry.response = parseJson(await resp.text());
    } catch {
      // body no longer available (page navigated): keep what we have
    }
    entry.finished = true;
  });
  page.on("requestfailed", (req) => {
    const entry = entries.get(req);
    if (!entry) return;
    entries.delete(req);
    entry.error = req.failure()?.errorText ?? "failed";
    entry.finished = true;
  });
}

/** [{index, label, id, comment, element, disabled}] for every marker in the DOM, in DOM order. */
async function readMarkers() {
  const fromDom = await page.locator(MARKER).evaluateAll((els) =>
    els.map((el) => {
      const label = el.getAttribute("aria-label") || "";
      const m = /annotation (\d+):/.exec(label);
      let annotation = null;
      const key = Object.keys(el).find((k) => k.startsWith("__reactFiber$"));
      for (let f = key ? el[key] : null, depth = 0; f && depth < 10; f = f.return, depth++) {
        const a = f.memoizedProps && f.memoizedProps.annotation;
        if (a && typeof a === "object" && typeof a.id === "string") {
          annotation = a;
          break;
        }
      }
      return {
        index: m ? Number(m[1]) : null,
        label,
        disabled: el.disabled,
        id: annotation ? annotation.id : null,
        comment: annotation ? annotation.comment : null,
        element: annotation ? annotation.element : null,
      };
    }),
  );
  if (fromDom.some((m) => m.id === null)) {
    const stored = await readStoredAnnotations();
    for (const m of fromDom) {
      const s = m.index !== null ? stored[m.index - 1] : undefined;
      if (m.id === null && s && m.label.endsWith(`: ${s.element}`)) Object.assign(m, { id: s.id, comment: s.comment, element: s.element });
    }
  }
  return fromDom;
}

async function readStoredAnnotations() {
  return page.evaluate(() => {
    try {
      return JSON.parse(localStorage.getItem(`feedback-annotations-${location.pathname}`) || "[]");
    } catch {
      return [];
    }
  });
}

/** The locator of the marker for a command's {serverId} or {index} (1-based marker number). */
async function markerFor(cmd) {
  const markers = await until(async () => {
    const ms = await readMarkers();
    const hit = ms.findIndex((m) => (cmd.serverId != null ? m.id === cmd.serverId : m.index === cmd.index) && !m.disabled);
    return hit >= 0 ? { ms, hit } : null;
  }, ACTION_TIMEOUT_MS, `marker ${cmd.serverId ?? `#${cmd.index}`}`);
  return { locator: page.locator(MARKER).nth(markers.hit), marker: markers.ms[markers.hit] };
}

async function ensureActive() {
  const start = page.getByRole("button", { name: "Start feedback mode", exact: true });
  if (await start.count()) {
    await start.click();
    await page.getByRole("button", { name: "Exit", exact: true }).waitFor({ state: "visible" });
  }
}

async function openCard(cmd) {
  const { locator, marker } = await markerFor(cmd);
  await locator.click();
  const card = page.locator(POPUP).filter({ has: page.getByRole("button", { name: "Delete annotation" }) });
  await card.waitFor({ state: "visible" });
  return { card, marker };
}

function isAnnotationCreate(resp, comment) {
  const req = resp.request();
  if (req.method() !== "POST" || !/\/sessions\/[^/]+\/annotations$/.test(new URL(req.url()).pathname)) return false;
  const body = parseJson(req.postData());
  return body !== null && typeof body === "object" && body.comment === comment;
}

const commands = {
  async open(cmd) {
    // Leave the previous page first, so no answer to one of its requests is taken for the new page's.
    await page.goto("about:blank");
    consoleLines.length = 0;
    // The toolbar's first session call after mount: POST /sessions (new) or GET /sessions/:id (join).
    const sessionCall =
      apiOrigin === null
        ? null
        : quiet(page.waitForResponse(
            (r) => {
              const { pathname } = new URL(r.url());
              const method = r.request().method();
              return isApi(r.url()) && ((method === "POST" && pathname === "/sessions") || (method === "GET" && /^\/sessions\/[^/]+$/.test(pathname)));
            },
            { timeout: ACTION_TIMEOUT_MS * 2 },
          ));
    await page.goto(cmd.url, { waitUntil: "load", timeout: ACTION_TIMEOUT_MS * 2 });
    await page.getByRole("button", { name: /^(Start feedback mode|Exit)$/ }).first().waitFor({ state: "attached" });
    let session = null;
    if (sessionCall !== null) {
      const resp = await sessionCall;
      session = { method: resp.request().method(), path: new URL(resp.url()).pathname, status: resp.status() };
      await until(
        () => page.evaluate(() => localStorage.getItem(`agentation-session-${location.pathname}`)),
        ACTION_TIMEOUT_MS,
        "toolbar session id in localStorage",
      );
    }
    const sessionId = await page.evaluate(() => localStorage.getItem(`agentation-session-${location.pathname}`));
    return { url: page.url(), sessionId, sessionCall: session };
  },

  async create(cmd) {
    if (!cmd.selector || typeof cmd.comment !== "string") throw new Error("create needs selector and comment");
    await ensureActive();
    await page.locator(cmd.selector).first().click();
    const popup = page.locator(POPUP).filter({ has: page.getByRole("button", { name: "Add", exact: true }) });
    await popup.waitFor({ state: "visible" });
    await popup.locator("textarea").fill(cmd.comment);
    const created = apiOrigin === null ? null : quiet(page.waitForResponse((r) => isAnnotationCreate(r, cmd.comment), { timeout: ACTION_TIMEOUT_MS }));
    await popup.getByRole("button", { name: "Add", exact: true }).click();
    await popup.waitFor({ state: "detached" });
    if (created === null) return { serverId: null };
    const resp = await created;
    const stored = parseJson(await resp.text());
    const serverId = stored && typeof stored === "object" ? stored.id : null;
    if (!resp.ok() || !serverId) throw new Error(`create: server answered ${resp.status()} ${JSON.stringify(stored)}`);
    // The toolbar swaps its local id for the server's; wait until the marker carries it.
    await until(async () => (await readMarkers()).some((m) => m.id === serverId), ACTION_TIMEOUT_MS, `marker ${serverId}`);
    return { serverId, status: resp.status(), sent: parseJson(resp.request().postData()), stored };
  },

  async edit(cmd) {
    if (typeof cmd.comment !== "string") throw new Error("edit needs comment");
    const { card, marker } = await openCard(cmd);
    await card.locator("textarea").fill(cmd.comment);
    const patched =
      apiOrigin === null
        ? null
        : quiet(
            page.waitForResponse((r) => r.request().method() === "PATCH" && r.url().endsWith(`/annotations/${marker.id}`), {
              timeout: ACTION_TIMEOUT_MS,
            }),
          );
    await card.getByRole("button", { name: "Save", exact: true }).click();
    await card.waitFor({ state: "detached" });
    const resp = patched === null ? null : await patched;
    return {
      serverId: marker.id,
      status: resp?.status() ?? null,
      sent: resp ? parseJson(resp.request().postData()) : null,
      response: resp ? parseJson(await resp.text()) : null,
    };
  },

  async delete(cmd) {
    const { card, marker } = await openCard(cmd);
    const deleted =
      apiOrigin === null
        ? null
        : quiet(
            page.waitForResponse((r) => r.request().method() === "DELETE" && r.url().endsWith(`/annotations/${marker.id}`), {
              timeout: ACTION_TIMEOUT_MS,
            }),
          );
    await card.getByRole("button", { name: "Delete annotation" }).click();
    const resp = deleted === null ? null : await deleted;
    await until(async () => !(await readMarkers()).some((m) => m.id === marker.id), ACTION_TIMEOUT_MS, `marker ${marker.id} to go`);
    return { serverId: marker.id, status: resp?.status() ?? null };
  },

  async activate() {
    await ensureActive();
    return {};
  },

  async markers() {
    const markers = await readMarkers();
    return { count: markers.length, markers };
  },

  async "wait-marker-gone"(cmd) {
    const started = Date.now();
    await until(async () => !(await readMarkers()).some((m) => m.id === cmd.serverId), cmd.timeoutMs ?? ACTION_TIMEOUT_MS, `marker ${cmd.serverId} to go`);
    return { elapsedMs: Date.now() - started };
  },

  async "wait-marker"(cmd) {
    const started = Date.now();
    await until(async () => (await readMarkers()).some((m) => m.id === cmd.serverId), cmd.timeoutMs ?? ACTION_TIMEOUT_MS, `marker ${cmd.serverId}`);
    return { elapsedMs: Date.now() - started };
  },

  async storage() {
    return { localStorage: await page.evaluate(() => Object.fromEntries(Object.entries(localStorage))) };
  },

  async requests(cmd) {
    const list = requests.slice();
    if (cmd.clear) requests.length = 0;
    return { requests: list };
  },

  async console() {
    return { lines: consoleLines.slice() };
  },

  async screenshot(cmd) {
    await page.screenshot({ path: cmd.path, fullPage: true });
    return { path: cmd.path };
  },

  async visit(cmd) {
    await page.goto("about:blank");
    consoleLines.length = 0;
    await page.goto(cmd.url, { waitUntil: "load", timeout: ACTION_TIMEOUT_MS * 2 });
    return { url: page.url() };
  },

  async "wait-dom"(cmd) {
    if (typeof cmd.selector !== "string") throw new Error("wait-dom needs selector");
    const started = Date.now();
    const timeout = cmd.timeoutMs ?? ACTION_TIMEOUT_MS;
    await page
      .waitForFunction(
        ({ selector, text, attr, value, gone }) => {
          const hit = [...document.querySelectorAll(selector)].some(
            (el) => (text == null || el.textContent.includes(text)) && (attr == null || el.getAttribute(attr) === value),
          );
          return gone ? !hit : hit;
        },
        { selector: cmd.selector, text: cmd.text ?? null, attr: cmd.attr ?? null, value: cmd.value ?? null, gone: Boolean(cmd.gone) },
        { timeout, polling: "raf" },
      )
      .catch(async (e) => {
        const seen = await commands.query({ selector: cmd.selector });
        throw new Error(`${cmd.gone ? "still there" : "not there"} after ${timeout} ms: ${cmd.selector} ${cmd.text ?? ""}; matches: ${JSON.stringify(seen.matches).slice(0, 600)} (${e.message.split("\n")[0]})`);
      });
    return { elapsedMs: Date.now() - started };
  },

  async query(cmd) {
    const matches = await page.locator(cmd.selector).evaluateAll((els) =>
      els.map((el) => ({ tag: el.tagName.toLowerCase(), text: el.textContent, data: { ...el.dataset } })),
    );
    return { matches };
  },

  async "color-scheme"(cmd) {
    await page.emulateMedia({ colorScheme: cmd.scheme });
    return {};
  },

  async contrast(cmd) {
    const results = await page.locator(cmd.selector).evaluateAll((els) => {
      const rgba = (value) => {
        const m = /rgba?\(([^)]+)\)/.exec(value);
        if (!m) return null;
        const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
        return { r, g, b, a };
      };
      const over = (top, bottom) => ({
        r: top.r * top.a + bottom.r * (1 - top.a),
        g: top.g * top.a + bottom.g * (1 - top.a),
        b: top.b * top.a + bottom.b * (1 - top.a),
        a: 1,
      });
      const background = (el) => {
        const layers = [];
        for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
          const color = rgba(getComputedStyle(node).backgroundColor);
          if (color && color.a > 0) layers.push(color);
          if (color && color.a >= 1) break;
        }
        let result = { r: 255, g: 255, b: 255, a: 1 };
        const last = layers[layers.length - 1];
        if (last && last.a >= 1) result = last;
        for (const layer of layers.slice(0, last && last.a >= 1 ? -1 : undefined).reverse()) result = over(layer, result);
        return result;
      };
      const luminance = ({ r, g, b }) => {
        const lin = (c) => {
          const v = c / 255;
          return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        };
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
      };
      return els.map((el) => {
        const bg = background(el);
        const fg = over(rgba(getComputedStyle(el).color), bg);
        const [hi, lo] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
        return { text: el.textContent.trim().slice(0, 60), ratio: (hi + 0.05) / (lo + 0.05) };
      });
    });
    return { results };
  },

  async press(cmd) {
    await page.keyboard.press(cmd.key);
    return {};
  },

  async focused() {
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const style = getComputedStyle(el);
      return {
        tag: el.tagName.toLowerCase(),
        text: el.textContent.trim().slice(0, 80),
        focus: el.dataset.focus ?? null,
        outlineWidth: parseFloat(style.outlineWidth) || 0,
        outlineStyle: style.outlineStyle,
      };
    });
    return { focused };
  },
};

let closing = null;
async function shutdown(code) {
  if (!closing) {
    closing = (async () => {
      try {
        if (context) await withTimeout(context.close(), 10_000, "close browser");
      } catch {
        // the browser may already be gone
      }
      rmSync(userDataDir, { recursive: true, force: true });
    })();
  }
  await closing;
  process.exit(code);
}

async function handle(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return { ok: false, error: `bad JSON: ${e.message}` };
  }
  if (cmd.cmd === "close") return null;
  const fn = commands[cmd.cmd];
  if (!fn) return { ok: false, error: `unknown command ${JSON.stringify(cmd.cmd)}` };
  try {
    const result = await withTimeout(fn(cmd), cmd.timeoutMs ? cmd.timeoutMs + 5_000 : DEFAULT_TIMEOUT_MS, cmd.cmd);
    return { ok: true, ...result };
  } catch (e) {
    const message = String(e && e.message ? e.message : e).replace(/\x1b\[[0-9;]*m/g, "");
    return { ok: false, error: message.split("\n").slice(0, 6).join("\n") };
  }
}

process.on("unhandledRejection", (e) => process.stderr.write(`driver: unhandled rejection: ${e}\n`));
process.on("SIGTERM", () => shutdown(143));
process.on("SIGINT", () => shutdown(130));

try {
  await withTimeout(launch(), 40_000, "launch chromium");
} catch (e) {
  send({ ok: false, error: String(e && e.message ? e.message : e) });
  await shutdown(1);
}
send({ ok: true, ready: true, browser: context.browser()?.version() ?? null });

// Commands run strictly one after another, in arrival order.
const rl = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    const answer = await handle(line);
    if (answer === null) {
      send({ ok: true, closed: true });
      await shutdown(0);
    }
    send(answer);
  });
});
rl.on("close", () => {
  queue = queue.then(() => shutdown(0));
});
