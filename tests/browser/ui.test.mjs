// Ember's web UI in a real browser (Debian chromium via playwright-core), against a live
// `ember agent` whose store holds a run of examples/split (fn_a 70 %, fn_b 30 %).
//
//   node tests/browser/ui.test.mjs <BASE_URL> <OUTDIR>
//
// Exits 0 when every check passes; saves a screenshot per step into OUTDIR.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node ui.test.mjs <BASE_URL> <OUTDIR>");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

let step = 0;
const failures = [];
function check(cond, what) {
  console.log((cond ? "ok   " : "FAIL ") + what);
  if (!cond) failures.push(what);
}
function near(value, want, tol, what) {
  check(Math.abs(value - want) <= tol, `${what}: ${value.toFixed(1)} (want ${want} ± ${tol})`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => { if (m.type() === "error") { const l = m.location(); errors.push(`${m.text()} at ${l.url}:${l.lineNumber} (frame ${m.page() ? "page" : "?"})`); } });

async function shot(name) {
  step += 1;
  const file = path.join(outDir, `${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`     screenshot ${file}`);
}
// Runs `action` and waits for the page's next completed load.
async function andWait(p, action) {
  const before = Number(await p.getAttribute("body", "data-loads"));
  await action();
  await p.waitForFunction((n) => Number(document.body.dataset.loads) > n && document.body.dataset.state === "ready", before, { timeout: 20000 });
  await p.waitForTimeout(150); // inferno's own setTimeout(unzoom/resize)
}
async function firstLoad(p, url) {
  await p.goto(url);
  await p.waitForFunction(() => Number(document.body.dataset.loads) > 0 && document.body.dataset.state === "ready", null, { timeout: 20000 });
  await p.waitForTimeout(150);
}
// Widths (CSS px) of the frames named `name` in the inlined graph, and of the widest frame.
async function frameWidths(p) {
  return p.evaluate(() => {
    const out = {};
    let all = 0;
    for (const g of document.querySelectorAll("#graph #frames > g")) {
      if (g.classList.contains("hide")) continue;
      const title = g.querySelector("title")?.textContent || "";
      const name = title.replace(/ \(.*$/s, "");
      const w = g.querySelector("rect").getBoundingClientRect().width;
      out[name] = (out[name] || 0) + w;
      all = Math.max(all, w);
    }
    return { out, all };
  });
}

try {
  // 1. The page, default view.
  await firstLoad(page, base + "/");
  check(await page.title() === "Ember", "the page is Ember's UI");
  check(await page.locator("#graph svg #frames").count() === 1, "a flame graph is inlined");
  await shot("initial");

  // 2. Filter on the workload's process.
  const options = await page.locator("#f-comm option").allTextContents();
  check(options.some((o) => o.startsWith("split (")), `the process filter offers split with its samples (${options.slice(0, 5).join(" | ")})`);
  await andWait(page, () => page.selectOption("#f-comm", "split"));
  check(await page.locator('#active-filters button[data-filter="comm=split"]').count() === 1, "the comm=split filter is active");
  check(page.url().includes("filter=comm%3Dsplit"), `the URL holds the filter (${page.url()})`);
  const title = await page.locator("#graph #title").textContent();
  check(title.includes("comm=split"), `the graph is of comm=split ("${title}")`);
  const { out, all } = await frameWidths(page);
  const a = out.fn_a || 0, b = out.fn_b || 0;
  check(a > 0 && b > 0, `fn_a and fn_b are drawn (${a.toFixed(0)} px, ${b.toFixed(0)} px of ${all.toFixed(0)} px)`);
  near(100 * a / (a + b), 70, 7, "fn_a's share of fn_a + fn_b, by drawn width (%)");
  near(100 * b / (a + b), 30, 7, "fn_b's share of fn_a + fn_b, by drawn width (%)");
  check((a + b) / all > 0.8, `fn_a and fn_b fill most of the split graph (${(100 * (a + b) / all).toFixed(1)} %)`);
  await shot("filtered-split");

  // 3. Search, with inferno's matched percentage.
  await page.fill("#search-input", "fn_a");
  await page.click("#search-btn");
  const matched = await page.locator("#graph #matched").textContent();
  const pct = Number((/Matched: ([\d.]+)%/.exec(matched) || [])[1]);
  check(Number.isFinite(pct), `inferno shows the match ("${matched}")`);
  near(pct, 70, 7, "search fn_a: matched %");
  check((await page.locator("#search-result").textContent()).includes("Matched"), "the search result is echoed next to the box");
  await shot("search-fn_a");

  // 4. Click a frame to zoom.
  await page.locator("#graph #frames > g", { has: page.locator("title", { hasText: /^fn_b \(/ }) }).first().click();
  await page.waitForTimeout(200);
  const zoomed = await frameWidths(page);
  check((zoomed.out.fn_b || 0) > 0.95 * zoomed.all, `after a click fn_b fills the graph (${(zoomed.out.fn_b || 0).toFixed(0)} of ${zoomed.all.toFixed(0)} px)`);
  check(!zoomed.out.fn_a, "fn_a is hidden while zoomed into fn_b");
  await shot("zoomed-fn_b");
  await page.click("#reset-zoom");
  await page.waitForTimeout(100);
  check(((await frameWidths(page)).out.fn_a || 0) > 0, "reset zoom brings fn_a back");

  // 5. The top table; a row focuses the graph.
  await andWait(page, () => page.click("#mode-top"));
  const rows = await page.locator("#top-table tbody tr").evaluateAll((trs) => trs.map((tr) => ({
    name: tr.dataset.name, self: Number(tr.children[1].textContent.replace(/\D/g, "")) })));
  const ra = rows.find((r) => r.name === "fn_a"), rb = rows.find((r) => r.name === "fn_b");
  check(ra && rb, `the top table lists fn_a and fn_b (${rows.slice(0, 4).map((r) => r.name + " " + r.self).join(", ")})`);
  if (ra && rb) near(100 * ra.self / (ra.self + rb.self), 70, 7, "fn_a's self share of fn_a + fn_b in the top table (%)");
  check(rows[0]?.name === "fn_a", "fn_a is the top function by self samples");
  await shot("top-table");
  await andWait(page, () => page.locator('#top-table tbody tr[data-name="fn_a"] td:first-child button').click());
  const ftitle = await page.locator("#graph #title").textContent();
  check(ftitle.includes("focus: fn_a"), `clicking fn_a focuses the graph ("${ftitle}")`);
  check(page.url().includes("focus=fn_a"), "the URL holds the focus");
  await shot("focus-fn_a");

  // 6. Sandwich of fn_a: callers above (an inferno graph in a frame), callees below.
  await andWait(page, () => page.click("#focus-sandwich"));
  check(await page.locator("#view-callers").isVisible(), "the sandwich shows the callers of fn_a");
  const callers = page.frameLocator("#callers-frame");
  await callers.locator("#frames").waitFor({ timeout: 10000 });
  check(await callers.locator("#frames g title", { hasText: /^work \(/ }).count() > 0, "work is drawn as a caller of fn_a");
  check((await page.locator("#graph #title").textContent()).includes("focus: fn_a"), "the callee half is focused on fn_a");
  await page.waitForTimeout(300);
  await shot("sandwich-fn_a");

  // 7. Diff view.
  await andWait(page, () => page.click("#mode-diff"));
  const dtitle = await page.locator("#graph #title").textContent().catch(() => "");
  check(dtitle.includes("differential"), `the diff view draws inferno's differential graph ("${dtitle}")`);
  check(await page.locator("#graph #frames > g").count() > 0, "the differential graph has frames");
  check(await page.locator("#dl-pprof").getAttribute("aria-disabled") === "true", "pprof download is off for a diff");
  await shot("diff");

  // 8. Back to the flame graph, unfocused, as an icicle; download the folded stacks.
  await andWait(page, () => page.click("#mode-flame"));
  await andWait(page, () => page.click("#focus-clear"));
  await andWait(page, () => page.selectOption("#orientation", "icicle"));
  check(await page.evaluate(() => window.inverted === true), "the graph is drawn as an icicle");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl-folded")]);
  const file = path.join(outDir, "download.folded");
  await download.saveAs(file);
  const folded = fs.readFileSync(file, "utf8");
  const lines = folded.trim().split("\n");
  check(lines.some((l) => /^split;.*;fn_a \d+$/.test(l)), `the folded download has a split;…;fn_a line (${lines.length} lines)`);
  check(lines.every((l) => l.startsWith("split;")), "the folded download is filtered like the screen");
  await shot("icicle");

  // 9. The shared URL restores the view.
  const shared = page.url();
  const page2 = await context.newPage();
  page2.on("pageerror", (e) => errors.push(String(e)));
  await firstLoad(page2, shared);
  check(await page2.locator('#active-filters button[data-filter="comm=split"]').count() === 1, "reloading the URL restores the filter");
  check(await page2.getAttribute("#mode-flame", "aria-pressed") === "true", "… and the mode");
  check(await page2.inputValue("#orientation") === "icicle" && await page2.evaluate(() => window.inverted === true), "… and the orientation");
  check((await page2.locator("#graph #title").textContent()).includes("comm=split"), "… and the graph is of comm=split");
  step += 1;
  await page2.screenshot({ path: path.join(outDir, `${String(step).padStart(2, "0")}-reloaded.png`), fullPage: true });

  // 10. A bad range shows the API's message.
  await page2.goto(base + "/?from=yesterday");
  await page2.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 20000 });
  const msg = await page2.locator("#message").textContent();
  check(msg.includes("invalid `from`"), `a bad range shows the API's error ("${msg}")`);
  step += 1;
  await page2.screenshot({ path: path.join(outDir, `${String(step).padStart(2, "0")}-bad-range.png`), fullPage: true });

  // 11. Auto-refresh counts down.
  await page.selectOption("#refresh", "30");
  await page.waitForTimeout(1200);
  const countdown = await page.locator("#countdown").textContent();
  check(/^update in \d+ s$/.test(countdown), `auto-refresh counts down ("${countdown}")`);

  check(errors.length === 0, `no script errors (${errors.join(" | ")})`);
} catch (e) {
  failures.push(String(e && e.stack || e));
  console.log("FAIL " + (e && e.stack || e));
  await shot("failure").catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`\n${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("\nall UI checks passed");
