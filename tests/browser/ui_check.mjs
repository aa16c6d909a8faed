#!/usr/bin/env node
// Headless-browser check of strata query's built-in web page (querier/src/web/index.html).
//
//   node tests/browser/ui_check.mjs --url http://127.0.0.1:PORT --query 'EXPR'
//        [--expect-stores N] [--expect-label name=value]... [--screenshot out.png]
//        [--range 15m|1h|6h|1d|1w|30d] [--timeout-ms 20000]
//
// Drives Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core; install both with scripts/install-browser.sh. It:
//   1. loads the page and waits for the store list; at least N stores must be
//      marked UP, each showing at least one label set (N = --expect-stores, default 0);
//   2. picks the Graph range (--range, default the page's 1h), types the query
//      into the box and presses Enter: the Graph tab must draw at
//      least one series (a legend entry and a non-empty SVG path), and the
//      query_range request must carry start/end/step and the Thanos parameters
//      dedup and partial_response as the checkboxes say;
//   3. opens the Table tab: at least one row, and every --expect-label pair must be
//      shown by some row;
//   4. reloads the page's shared link (URL hash): the query box must hold the query;
//   5. fails if the page logged any console error, threw, or asked anything of
//      another origin (the page must be self-contained).
// Exit status 0 on success; otherwise it prints the reason and exits 1.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function usage(msg) {
  console.error(`ui_check: ${msg}\nusage: ui_check.mjs --url URL --query EXPR [--expect-stores N] [--expect-label k=v]... [--range 1h] [--screenshot PATH] [--timeout-ms MS]`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { expectStores: 0, expectLabels: [], timeoutMs: 20000 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => { if (i + 1 >= argv.length) usage(`${flag} needs a value`); return argv[++i]; };
    switch (flag) {
      case "--url": opts.url = value(); break;
      case "--query": opts.query = value(); break;
      case "--screenshot": opts.screenshot = value(); break;
      case "--expect-stores": opts.expectStores = Number(value()); break;
      case "--timeout-ms": opts.timeoutMs = Number(value()); break;
      case "--range": opts.range = value(); break;
      case "--expect-label": {
        const v = value(), eq = v.indexOf("=");
        if (eq <= 0) usage(`--expect-label wants name=value, got ${JSON.stringify(v)}`);
        opts.expectLabels.push([v.slice(0, eq), v.slice(eq + 1)]);
        break;
      }
      case "-h": case "--help": usage("help");
      default: usage(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (!opts.url) usage("--url is required");
  if (!opts.query) usage("--query is required");
  if (!Number.isInteger(opts.expectStores) || opts.expectStores < 0) usage("--expect-stores wants a whole number");
  if (!(opts.timeoutMs > 0)) usage("--timeout-ms wants a positive number");
  if (opts.range !== undefined && !RANGES.includes(opts.range)) usage(`--range wants one of ${RANGES.join(", ")}`);
  return opts;
}

// The Graph tab's range choices (the labels of index.html's #range options).
const RANGES = ["15m", "1h", "6h", "1d", "1w", "30d"];

class CheckFailed extends Error {}
const fail = msg => { throw new CheckFailed(msg); };

// Waits until a panel's data-state leaves "loading"/"idle"; fails with the page's
// own error message if the query failed.
async function waitPanel(page, selector, what, timeoutMs) {
  try {
    await page.waitForFunction(sel => ["done", "error"].includes(document.querySelector(sel)?.dataset.state),
      selector, { timeout: timeoutMs });
  } catch (e) {
    const st = await page.$eval(selector, n => n.dataset.state).catch(() => "missing");
    fail(`${what}: still "${st}" after ${timeoutMs} ms`);
  }
  const state = await page.$eval(selector, n => n.dataset.state);
  if (state === "error") {
    const msg = await page.$eval(`${selector} .msg.error`, n => n.textContent).catch(() => "(no message)");
    fail(`${what} failed: ${msg}`);
  }
}

async function check(page, opts, problems) {
  const t = opts.timeoutMs;
  const res = await page.goto(opts.url, { waitUntil: "load", timeout: t });
  if (!res || !res.ok()) fail(`GET ${opts.url} answered HTTP ${res ? res.status() : "(none)"}`);
  if (!(await page.$("#stores")) || !(await page.$("#expr")))
    fail(`${opts.url} is not strata's query page (no #expr or #stores element)`);

  // 1. Stores.
  await waitPanel(page, "#stores", "store list", t);
  const stores = await page.$$eval("#stores tbody tr", rows => rows.map(r => ({
    name: r.dataset.name, health: r.dataset.health,
    labelSets: [...r.querySelectorAll("td.labelsets .chip")].map(c => c.textContent),
  })));
  const healthy = stores.filter(s => s.health === "up" && s.labelSets.length > 0);
  console.log(`stores: ${stores.length} listed, ${healthy.length} healthy with label sets` +
    (stores.length ? ` (${stores.map(s => `${s.name} ${s.health} ${s.labelSets.join(" ")}`).join("; ")})` : ""));
  if (healthy.length < opts.expectStores)
    fail(`expected at least ${opts.expectStores} healthy stores with label sets, found ${healthy.length}`);

  // 2. Graph: type the query, press Enter.
  const rangeRequests = [];
  page.on("request", r => { if (new URL(r.url()).pathname.endsWith("/api/v1/query_range")) rangeRequests.push(new URL(r.url())); });
  if (opts.range) await page.selectOption("#range", { label: opts.range });
  await page.fill("#expr", opts.query);
  await page.press("#expr", "Enter");
  await waitPanel(page, "#panel-graph", "graph query", t);
  const legend = await page.$$eval("#legend li[data-series]", ls => ls.map(l => l.dataset.series));
  const paths = await page.$$eval("#chart path.series", ps => ps.map(p => p.getAttribute("d") || ""));
  console.log(`graph: ${legend.length} legend entries, ${paths.filter(d => d.length > 0).length} series drawn`);
  if (legend.length === 0) fail("graph: no series in the legend (empty result?)");
  if (!paths.some(d => /^M[\d.-]+,[\d.-]+/.test(d))) fail("graph: no series line was drawn");
  const req = rangeRequests.at(-1);
  if (!req) fail("graph: no /api/v1/query_range request was seen");
  const p = req.searchParams;
  if (p.get("query") !== opts.query) fail(`graph: query_range sent query=${JSON.stringify(p.get("query"))}`);
  for (const k of ["start", "end", "step"]) if (!(Number(p.get(k)) > 0)) fail(`graph: query_range sent ${k}=${p.get(k)}`);
  const boxes = await page.evaluate(() => ({ dedup: document.querySelector("#dedup").checked, partial: document.querySelector("#partial").checked }));
  if (p.get("dedup") !== String(boxes.dedup) || p.get("partial_response") !== String(boxes.partial))
    fail(`graph: query_range sent dedup=${p.get("dedup")} partial_response=${p.get("partial_response")}, checkboxes say ${boxes.dedup}/${boxes.partial}`);

  // 3. Table.
  await page.click("#tab-table");
  await waitPanel(page, "#panel-table", "table query", t);
  const rows = await page.$$eval("#result-table tbody tr[data-series]", rs => rs.map(r => r.textContent));
  console.log(`table: ${rows.length} rows`);
  if (rows.length === 0) fail("table: no rows");
  for (const [k, v] of opts.expectLabels) {
    const want = `${k}=${JSON.stringify(v)}`;
    if (!rows.some(r => r.includes(want))) fail(`table: no row shows ${want}; first rows: ${rows.slice(0, 3).join(" | ")}`);
  }

  // 4. The shared link restores the query.
  const link = page.url();
  if (!new URL(link).hash.includes("expr=")) fail(`the URL hash does not hold the query: ${link}`);
  await page.goto("about:blank");
  await page.goto(link, { waitUntil: "load", timeout: t });
  const restored = await page.inputValue("#expr");
  if (restored !== opts.query) fail(`reloading ${link} restored the query as ${JSON.stringify(restored)}`);
  await waitPanel(page, "#panel-table", "table query after reload", t);

  // Screenshot on the Graph tab, with the store list below.
  await page.click("#tab-graph");
  await waitPanel(page, "#panel-graph", "graph query after reload", t);
  await waitPanel(page, "#stores", "store list after reload", t);
  if (opts.screenshot) {
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    console.log(`screenshot: ${opts.screenshot}`);
  }
  if (problems.length) fail(`the page reported errors:\n  ${problems.join("\n  ")}`);
}

const opts = parseArgs(process.argv.slice(2));
// A new empty profile each run; the flags keep Chromium off the (closed) network.
const profile = mkdtempSync(join(tmpdir(), "strata-ui-check-"));
let ctx = null, page = null, code = 1;
try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
    timeout: opts.timeoutMs,
  });
  page = ctx.pages()[0] || await ctx.newPage();
  const problems = [];
  page.on("console", m => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", e => problems.push(`uncaught exception: ${e.message}`));
  // The page must be self-contained: nothing but same-origin requests (and data: URLs).
  const origin = new URL(opts.url).origin;
  page.on("request", r => {
    const u = r.url();
    if (!u.startsWith("data:") && !u.startsWith("about:") && new URL(u).origin !== origin) problems.push(`request to another origin: ${u}`);
  });
  await check(page, opts, problems);
  console.log("ui_check: OK");
  code = 0;
} catch (e) {
  console.error(`ui_check: FAIL: ${e instanceof CheckFailed ? e.message : (e.message || e)}`);
  // A screenshot of the failing state helps more than one of a passing run.
  if (opts.screenshot && page) {
    await page.screenshot({ path: opts.screenshot, fullPage: true })
      .then(() => console.error(`screenshot of the failure: ${opts.screenshot}`), () => {});
  }
} finally {
  if (ctx) await ctx.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exitCode = code;
