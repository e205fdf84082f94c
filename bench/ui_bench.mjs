// Times a node-sized flame graph in the web UI: the server's call tree (query + tree +
// pruning) and the browser's part (parse it, draw the SVG), for a store holding
// 50,000 distinct stacks in the last hour. Run by bench/ui_bench.sh, which fills the store
// and starts the agent; prints Markdown.
//   node bench/ui_bench.mjs <BASE_URL>
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../tests/browser/package.json"));
const { chromium } = require("playwright-core");

const base = process.argv[2];
if (!base) {
  console.error("usage: node bench/ui_bench.mjs <BASE_URL>");
  process.exit(2);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const WIDTH = 1316;

// Server: the call tree the UI asks for (/api/v1/flame, pruned to 1 px at the page's
// width), and inferno's SVG of the same (what the SVG download gets).
const server = {};
for (const [name, url] of [
  ["flame", `${base}/api/v1/flame?from=now-1h&width=${WIDTH}`],
  ["svg", `${base}/api/v1/profile?from=now-1h&format=svg&width=${WIDTH}`],
]) {
  const times = [];
  let bytes = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = await fetch(url);
    const body = await r.text();
    times.push(performance.now() - t);
    if (!r.ok) throw new Error(`${r.status}: ${body}`);
    bytes = body.length;
  }
  server[name] = { p50: median(times), bytes };
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
// Whole page: navigation to a drawn landing view (chart, processes, graph, table).
const whole = [];
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  await page.goto(`${base}/?from=now-1h`);
  await page.waitForFunction(() => document.body.dataset.state === "ready" && Number(document.body.dataset.loads) > 0 &&
    document.querySelector("#flame rect"), null, { timeout: 60000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  whole.push(performance.now() - t);
}
// Browser only: parse the tree the page fetched, and draw the graph again (switching the
// colouring redraws every frame), as the page does.
const flameText = await (await fetch(`${base}/api/v1/flame?from=now-1h&width=${WIDTH}`)).text();
const inBrowser = await page.evaluate(async (text) => {
  const times = [];
  const sel = document.getElementById("colour-by");
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    JSON.parse(text);
    sel.value = i % 2 ? "binary" : "process";
    sel.dispatchEvent(new Event("change"));
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    times.push(performance.now() - t);
  }
  return times;
}, flameText);
const frames = await page.evaluate(() => document.querySelectorAll("#flame rect").length);
await browser.close();

console.log("\n## Rendering 50,000 distinct stacks (issues 4 and 18)\n");
console.log(`- server, /api/v1/flame for the last hour, pruned to 1 px at ${WIDTH} px: ` +
  `p50 **${server.flame.p50.toFixed(0)} ms** (${server.flame.bytes} bytes of JSON, ${frames} frames drawn)`);
console.log(`- inferno's SVG of the same (the SVG download): p50 ${server.svg.p50.toFixed(0)} ms (${server.svg.bytes} bytes)`);
console.log(`- browser, parse the tree + draw the graph: p50 **${median(inBrowser).toFixed(0)} ms**`);
console.log(`- whole page, navigation to the drawn landing view (chart, processes, graph, table): p50 **${median(whole).toFixed(0)} ms**`);
console.log(`- server + browser for the graph: **${(server.flame.p50 + median(inBrowser)).toFixed(0)} ms** (goal < 1,000 ms)`);
