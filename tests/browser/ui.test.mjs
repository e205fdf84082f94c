// Ember's web UI in a real browser (Debian chromium via playwright-core), against a live
// `ember agent` whose store holds a run of examples/split (fn_a 70 %, fn_b 30 %) and then a
// run of examples/slowed/split (fn_b 46 %), both named `split`.
//
//   node tests/browser/ui.test.mjs <BASE_URL> <OUTDIR> <A_FROM> <A_TO> <B_FROM> <B_TO> <PLAIN_PID> <SLOWED_PID>
//
// A is a range holding the plain run, B one holding the slowed run (RFC 3339, UTC); the
// pids tell the two `split` processes apart. Exits 0 when every check
// passes; saves a screenshot per step into OUTDIR.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, outDir, plainFrom, plainTo, slowFrom, slowTo, plainPid, slowPid] = process.argv.slice(2);
if (!base || !outDir || !slowPid) {
  console.error("usage: node ui.test.mjs <BASE_URL> <OUTDIR> <A_FROM> <A_TO> <B_FROM> <B_TO> <PLAIN_PID> <SLOWED_PID>");
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
  check(Math.abs(value - want) <= tol, `${what}: ${value.toFixed(2)} (want ${want} ± ${tol})`);
}
const VIEWPORT = { width: 1366, height: 900 };
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const errors = [];
async function newPage(colorScheme) {
  const context = await browser.newContext({ viewport: VIEWPORT, acceptDownloads: true, colorScheme });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  // A 400 answer is logged by the browser itself; the page shows the API's message for it.
  page.on("console", (m) => { if (m.type() === "error" && !/status of 400/.test(m.text())) errors.push(`${m.text()} at ${m.location().url}:${m.location().lineNumber}`); });
  // The page must never fall back to the browser's prompt() or alert().
  page.on("dialog", (d) => { errors.push(`a ${d.type()} dialog opened: ${d.message()}`); d.dismiss(); });
  return page;
}
const page = await newPage("light");

async function shot(p, name, fullPage = false) {
  step += 1;
  const file = path.join(outDir, `${String(step).padStart(2, "0")}-${name}.png`);
  await p.screenshot({ path: file, fullPage });
  console.log(`     screenshot ${file}`);
}
async function andWait(p, action) {
  const before = Number(await p.getAttribute("body", "data-loads"));
  await action();
  await p.waitForFunction((n) => Number(document.body.dataset.loads) > n && document.body.dataset.state === "ready", before, { timeout: 30000 });
}
async function open(p, query) {
  await p.goto(base + "/" + query);
  await p.waitForFunction(() => Number(document.body.dataset.loads) > 0 && document.body.dataset.state === "ready", null, { timeout: 30000 });
}
// Drawn widths (CSS px) per frame name in the flame graph, and the root's.
async function frameWidths(p) {
  return p.evaluate(() => {
    const out = {};
    for (const r of document.querySelectorAll("#flame rect[data-name]")) out[r.dataset.name] = (out[r.dataset.name] || 0) + r.getBoundingClientRect().width;
    const root = document.querySelector('#flame rect[data-i="0"]');
    return { out, all: root ? root.getBoundingClientRect().width : 0 };
  });
}
// Every string a person can see or copy from the page: its text, the inputs' values, the
// titles and links, the download names, and the URL.
async function visibleStrings(p) {
  return p.evaluate(() => {
    const out = [location.href, document.title, document.body.innerText];
    for (const e of document.querySelectorAll("input, select")) out.push(e.value);
    for (const e of document.querySelectorAll("[title], title")) out.push(e.getAttribute("title") || e.textContent);
    for (const a of document.querySelectorAll("a")) out.push(a.getAttribute("href") || "", a.getAttribute("download") || "");
    for (const e of document.querySelectorAll("[aria-label]")) out.push(e.getAttribute("aria-label"));
    return out;
  });
}
const UNIX_SECONDS = /(?<![\d.])1[5-9]\d{8}(?:\.\d+)?(?![\d])/;
async function noUnixSeconds(p, where) {
  const strings = await visibleStrings(p);
  const hit = strings.find((s) => UNIX_SECONDS.test(s || ""));
  check(!hit, `no unix-seconds string on the ${where} page${hit ? ` (found in "${hit.slice(0, 200)}")` : ""}`);
}

try {
  // 1. The first screen: the split process and its CPU, in human units, without scrolling.
  // The range of both runs, as a link to it would give it.
  const runsFrom = [plainFrom, slowFrom].sort()[0], runsTo = [plainTo, slowTo].sort()[1];
  const runs = `?from=${encodeURIComponent(runsFrom)}&to=${encodeURIComponent(runsTo)}`;
  await open(page, runs);
  check(await page.title() === "Ember", "the page is Ember's UI");
  await shot(page, "first-screen");
  const proc = page.locator('#top-procs li[data-comm="split"]');
  check(await proc.count() === 1, "the top processes list the split workload");
  const box = await proc.boundingBox();
  const scrollY = await page.evaluate(() => window.scrollY);
  check(box && box.y >= 0 && box.y + box.height <= VIEWPORT.height && scrollY === 0,
    `split's row is on the first screen without scrolling (y ${box && box.y.toFixed(0)} to ${box && (box.y + box.height).toFixed(0)} of ${VIEWPORT.height} px)`);
  const procText = await proc.innerText();
  check(/split/.test(procText) && /\d[\d.,]* CPU s/.test(procText) && /\d[\d.,]* cores?/.test(procText) && /%/.test(procText),
    `split's row gives its CPU in CPU seconds, cores and share ("${procText.replace(/\s+/g, " ")}")`);
  const chartText = await page.locator("#chart svg").textContent();
  check(/cores/.test(chartText) && /\d\d:\d\d/.test(chartText), "the CPU chart has a cores axis and local clock times");
  check(await page.locator("#chart .mark rect.sel").count() === 1, "the selected range is drawn on the chart");
  const total = await page.locator("#cpu-total").innerText();
  check(/CPU s in [\d.]+ (s|min), [\d.,]+ cores? on average/.test(total), `the chart's total is in CPU seconds and cores ("${total}")`);
  const rangeText = await page.locator("#range-text").innerText();
  check(/^\d\d:\d\d:\d\d – \d\d:\d\d:\d\d \([\d.]+ (s|min)\)$/.test(rangeText), `the range reads as local times and a duration ("${rangeText}")`);
  check(/UTC/.test(await page.getAttribute("#range-text", "title")), "… with UTC on hover");
  const flameBox = await page.locator("#flame").boundingBox();
  check(flameBox && flameBox.height <= VIEWPORT.height, `the flame graph fits the screen (${flameBox && flameBox.height.toFixed(0)} px high, scrolls beyond)`);
  check(await page.evaluate(() => document.querySelector('#flame rect[data-i="0"]').getAttribute("y") === "0"), "the flame graph is an icicle (root at the top)");
  check(await page.locator("#legend span").count() > 0, "a legend explains the colours");
  await noUnixSeconds(page, "first");

  // 2. The tooltip, next to the pointer.
  const fnA = page.locator('#flame rect[data-name="fn_a"]').first();
  const ab = await fnA.boundingBox();
  await page.mouse.move(ab.x + ab.width / 2, ab.y + ab.height / 2);
  await page.waitForSelector("#tooltip:not([hidden])", { timeout: 3000 });
  const tb = await page.locator("#tooltip").boundingBox();
  const tipText = await page.locator("#tooltip").innerText();
  check(Math.abs(tb.x - (ab.x + ab.width / 2)) < 60 && Math.abs(tb.y - (ab.y + ab.height / 2)) < 60,
    `the tooltip sits next to the pointer (${tb.x.toFixed(0)},${tb.y.toFixed(0)} vs ${(ab.x + ab.width / 2).toFixed(0)},${(ab.y + ab.height / 2).toFixed(0)})`);
  check(/fn_a/.test(tipText) && /CPU s/.test(tipText) && /Binary\s+split/.test(tipText) && /samples/i.test(tipText),
    `the tooltip names fn_a, its binary, CPU seconds and samples ("${tipText.replace(/\s+/g, " ")}")`);
  await shot(page, "tooltip");
  await page.mouse.move(5, 5);

  // 3. The label explorer: shares per value under the other filters, adding up to the chart's total.
  // Loaded again first, so the chart and the explorer read the store in the same state: the
  // agent may have stored the window holding the range's end since the first load.
  await open(page, runs);
  await page.click("#explore-btn");
  await page.selectOption("#ex-label", "comm");
  const values = await page.locator("#ex-values li button").evaluateAll((bs) => bs.map((b) => ({
    value: b.dataset.value, samples: Number(b.dataset.samples), share: Number(b.dataset.share), text: b.innerText })));
  const chartSamples = Number(await page.getAttribute("#cpu-total", "data-samples"));
  const sum = values.reduce((n, v) => n + v.samples, 0);
  const unnamed = Number(await page.getAttribute("#ex-total", "data-unlabelled"));
  check(sum + unnamed === chartSamples, `the explorer's processes (and ${unnamed} samples without a process name) add up to the chart's total (${sum} + ${unnamed} vs ${chartSamples} samples)`);
  near(values.reduce((n, v) => n + v.share, 0) + unnamed / chartSamples, 1, 0.001, "the explorer's process shares sum to 1");
  check(!values.some((v) => v.value === "swapper"), "the idle task (swapper) is not offered");
  check(values.every((v, i) => i === 0 || values[i - 1].samples >= v.samples), "values are sorted by CPU");
  check(values.find((v) => v.value === "split")?.text.includes("CPU s"), "values show CPU seconds");
  await page.selectOption("#ex-label", "pid");
  const pids = await page.locator("#ex-values li button").allInnerTexts();
  check(pids.some((t) => /^\d+\s*split/.test(t)), `PIDs are shown with their process (${pids.slice(0, 3).map((t) => t.replace(/\s+/g, " ")).join(" | ")})`);
  await page.fill("#ex-search", "split");
  const searched = await page.locator("#ex-values li button").count();
  check(searched >= 1 && searched < pids.length + 1, `the explorer searches (${searched} of ${pids.length} PIDs match "split")`);
  await page.fill("#ex-search", "");
  await page.selectOption("#ex-label", "comm");
  await shot(page, "label-explorer");
  await andWait(page, () => page.click('#ex-values button[data-value="split"]'));
  check(await page.locator('#active-filters button[data-filter="comm=split"]').count() === 1, "choosing split in the explorer filters on it");
  check(page.url().includes("filter=comm%3Dsplit"), `the URL holds the filter (${page.url()})`);

  // 4. The plain run alone: fn_a 70 %, fn_b 30 %, in the graph, the search and the table.
  await open(page, `?from=${encodeURIComponent(plainFrom)}&to=${encodeURIComponent(plainTo)}&filter=comm%3Dsplit%2Cpid%3D${plainPid}`);
  const { out } = await frameWidths(page);
  const a = out.fn_a || 0, b = out.fn_b || 0;
  check(a > 0 && b > 0, `fn_a and fn_b are drawn (${a.toFixed(0)} px, ${b.toFixed(0)} px)`);
  near(100 * a / (a + b), 70, 7, "fn_a's share of fn_a + fn_b by drawn width (%)");
  await page.fill("#search-input", "fn_a");
  const matched = await page.locator("#search-result").innerText();
  near(100 * Number(await page.getAttribute("#search-result", "data-share")), 70, 8, `in-page search for fn_a ("${matched}"), matched %`);
  check(/CPU s/.test(matched), "the search result is in CPU seconds too");
  await shot(page, "search-fn_a");
  await page.fill("#search-input", "");
  await page.locator('#flame rect[data-name="fn_b"]').first().click();
  const zoomed = await frameWidths(page);
  check((zoomed.out.fn_b || 0) > 0.95 * zoomed.all, `a click zooms into fn_b (${(zoomed.out.fn_b || 0).toFixed(0)} of ${zoomed.all.toFixed(0)} px)`);
  await page.click("#reset-zoom");
  check(((await frameWidths(page)).out.fn_a || 0) > 0, "reset zoom brings fn_a back");
  const rows = await page.locator("#top-table tbody tr").evaluateAll((trs) => trs.map((tr) => ({
    name: tr.dataset.name, group: tr.dataset.group, self: Number(tr.dataset.self), text: tr.innerText })));
  const ra = rows.find((r) => r.name === "fn_a"), rb = rows.find((r) => r.name === "fn_b");
  check(ra && rb && ra.group === "split", `the top table lists fn_a and fn_b with their process (${rows.slice(0, 3).map((r) => r.name + "/" + r.group).join(", ")})`);
  if (ra && rb) near(100 * ra.self / (ra.self + rb.self), 70, 7, "fn_a's self share of fn_a + fn_b in the table (%)");
  const heads = await page.locator("#top-table thead").innerText();
  check(ra && /\d s · [\d.]+ %.*\d s · [\d.]+ %/s.test(ra.text) && /Self CPU/.test(heads) && /Total CPU/.test(heads),
    `rows give self and total CPU time and % ("${ra && ra.text.replace(/\s+/g, " ")}")`);
  const wraps = await page.locator("#top-table tbody td").evaluateAll((tds) => tds.filter((td) => td.getBoundingClientRect().height > 30).length);
  check(wraps === 0, "no table cell wraps");
  await page.fill("#top-search", "fn_b");
  check(await page.locator("#top-table tbody tr").count() === 1, "the table's search keeps fn_b's row only");
  await page.fill("#top-search", "");
  await andWait(page, () => page.selectOption("#group", "binary"));
  const binRow = await page.locator('#top-table tbody tr[data-name="fn_a"]').first().getAttribute("data-group");
  check(binRow === "split" && (await page.locator("#grp-head").innerText()) === "Binary", `grouped by binary, fn_a is in the split binary (${binRow})`);
  await shot(page, "plain-run-by-binary");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl-folded")]);
  const name = download.suggestedFilename();
  check(/^ember-\d{4}-\d\d-\d\d_\d{4}-[\d.]+(ms|s|min|h|d)\.folded$/.test(name), `the download is named by local time and duration (${name})`);
  const folded = fs.readFileSync(await download.path(), "utf8").trim().split("\n");
  check(folded.length > 0 && folded.every((l) => l.startsWith("split;")), "the folded download is filtered like the screen");
  await noUnixSeconds(page, "filtered");

  // 5. Comparison: the slowed run (B) against the plain run (A), fn_b grown.
  const cmpQuery = `?mode=compare&bfrom=${encodeURIComponent(plainFrom)}&bto=${encodeURIComponent(plainTo)}&bfilter=pid%3D${plainPid}` +
    `&from=${encodeURIComponent(slowFrom)}&to=${encodeURIComponent(slowTo)}&filter=pid%3D${slowPid}`;
  await open(page, cmpQuery);
  check(await page.locator("#chart .mark[data-side=a]").count() === 1 && await page.locator("#chart .mark[data-side=b]").count() === 1,
    "both ranges are marked on the chart");
  const grew = await page.locator("#grew-rows tr[data-name]").evaluateAll((trs) => trs.map((tr) => ({ name: tr.dataset.name, delta: Number(tr.dataset.delta), text: tr.innerText })));
  check(grew[0]?.name === "fn_b", `fn_b grew most (${grew.slice(0, 3).map((r) => r.name + " " + (100 * r.delta).toFixed(1)).join(", ")})`);
  check(grew[0] && grew[0].delta > 0.08, `fn_b's share grew by more than 8 points (${grew[0] && (100 * grew[0].delta).toFixed(1)})`);
  check(grew[0] && / pt/.test(grew[0].text) && /[+−][\d.]+ s/.test(grew[0].text), `the change is given by share and in CPU seconds ("${grew[0] && grew[0].text.replace(/\s+/g, " ")}")`);
  const shrank = await page.locator("#shrank-rows tr[data-name]").evaluateAll((trs) => trs.map((tr) => tr.dataset.name));
  check(shrank[0] === "fn_a", `fn_a shrank most (${shrank.slice(0, 3).join(", ")})`);
  const fnB = page.locator('#flame rect[data-name="fn_b"]').first();
  check(/hsl\(2,/.test(await fnB.getAttribute("fill")), "fn_b is drawn red (grew)");
  const bb = await fnB.boundingBox();
  await page.mouse.move(bb.x + bb.width / 2, bb.y + bb.height / 2);
  await page.waitForSelector("#tooltip:not([hidden])", { timeout: 3000 });
  const ctip = await page.locator("#tooltip").innerText();
  check(/A \(baseline\)/.test(ctip) && /\+[\d.]+ points/.test(ctip) && /CPU s/.test(ctip), `the comparison tooltip gives both sides and the change ("${ctip.replace(/\s+/g, " ")}")`);
  await shot(page, "compare-slowed-vs-plain");
  await page.mouse.move(5, 5);
  await noUnixSeconds(page, "comparison");

  // 6. An empty baseline says so.
  const hourBefore = new Date(Date.parse(plainFrom) - 3600e3).toISOString();
  const hourBefore2 = new Date(Date.parse(plainFrom) - 3000e3).toISOString();
  await open(page, `?mode=compare&bfrom=${encodeURIComponent(hourBefore)}&bto=${encodeURIComponent(hourBefore2)}` +
    `&from=${encodeURIComponent(slowFrom)}&to=${encodeURIComponent(slowTo)}&filter=pid%3D${slowPid}`);
  const msg = await page.locator("#message").innerText();
  check(await page.locator("#message").isVisible() && /A \(baseline\) has no samples/.test(msg) && /Nothing to compare against/.test(msg),
    `an empty baseline gives the message ("${msg}")`);
  check(await page.locator("#grew-rows tr[data-name]").count() === 0, "… and no table of changes against nothing");
  await shot(page, "compare-empty-baseline");

  // 7. Dark mode follows the system setting.
  const darkPage = await newPage("dark");
  await open(darkPage, runs);
  const bg = await darkPage.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, bl] = (bg.match(/\d+/g) || [255, 255, 255]).map(Number);
  check(0.2126 * r + 0.7152 * g + 0.0722 * bl < 60, `dark mode: the page is dark (${bg})`);
  check(await darkPage.locator("#flame rect[data-name]").count() > 0, "dark mode: the flame graph is drawn");
  await shot(darkPage, "dark-mode");
  await darkPage.close();

  // 8. A bad range shows the API's message; auto-refresh counts down.
  await page.goto(base + "/?from=yesterday");
  await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 30000 });
  const bad = await page.locator("#message").textContent();
  check(bad.includes("invalid `from`"), `a bad range shows the API's error ("${bad}")`);
  await open(page, runs);
  await page.selectOption("#refresh", "30");
  await page.waitForTimeout(1200);
  const countdown = await page.locator("#countdown").textContent();
  check(/^update in \d+ s$/.test(countdown), `auto-refresh counts down ("${countdown}")`);

  // 9. The off-CPU profile (the agent runs with --off-cpu): the selector offers it, and the
  // page says it shows time off CPU, in time waited rather than CPU.
  await open(page, runs);
  const types = await page.locator("#ptype option").evaluateAll((os) => os.map((o) => o.value));
  check(types.includes("off-cpu"), `the profile selector offers off-CPU time (${types})`);
  await andWait(page, () => page.selectOption("#ptype", "off-cpu"));
  const offTitle = await page.locator("#chart-title").textContent();
  const offTotal = await page.locator("#cpu-total").textContent();
  check(offTitle === "Time off CPU", `the chart says it shows time off CPU ("${offTitle}")`);
  check(/(ms|s) off CPU in [\d.]+ (s|min), [\d.,]+ threads? waiting on average/.test(offTotal) && !/CPU s/.test(offTotal),
    `the off-CPU total is in time waited ("${offTotal}")`);
  check(new URL(page.url()).searchParams.get("type") === "off-cpu", "the URL keeps the profile type");
  check(await page.locator("#flame rect[data-name]").count() > 0, "the off-CPU flame graph is drawn");
  await shot(page, "off-cpu");

  check(errors.length === 0, `no script errors or dialogs (${errors.join(" | ")})`);
} catch (e) {
  failures.push(String(e && e.stack || e));
  console.log("FAIL " + (e && e.stack || e));
  await shot(page, "failure", true).catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`\n${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("\nall UI checks passed");
