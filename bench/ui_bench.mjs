// Times a node-sized flame graph in the web UI: the server's SVG (query + inferno) and the
// browser's part (inline the SVG, run inferno's script, lay it out), for a store holding
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

// Server: the SVG the UI asks for (1 px pruning at the page's width), and the same
// without pruning for comparison.
const server = {};
for (const [name, extra] of [["pruned to 1 px", `&width=${WIDTH}`], ["unpruned", ""]]) {
  const times = [];
  let bytes = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = await fetch(`${base}/api/v1/profile?from=now-1h&format=svg${extra}`);
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
// Whole page: navigation to a drawn, interactive graph (inferno's init done).
const whole = [];
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  await page.goto(`${base}/?from=now-1h`);
  await page.waitForFunction(() => document.querySelector("#graph #frames") && window.unzoombtn);
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  whole.push(performance.now() - t);
}
// Browser only: inline the already-fetched SVG and run inferno on it, as the UI does.
const svgText = await (await fetch(`${base}/api/v1/profile?from=now-1h&format=svg&width=${WIDTH}`)).text();
const inBrowser = await page.evaluate(async (text) => {
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const node = document.importNode(doc.documentElement, true);
    node.querySelector("script")?.remove();
    node.id = "flame-svg";
    document.getElementById("graph").replaceChildren(node);
    window.init();
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    times.push(performance.now() - t);
  }
  return times;
}, svgText);
const frames = await page.evaluate(() => document.querySelectorAll("#graph #frames > g").length);
await browser.close();

console.log("\n## Rendering 50,000 distinct stacks (issue 4)\n");
console.log(`- server, /api/v1/profile?format=svg for the last hour, pruned to 1 px at ${WIDTH} px: ` +
  `p50 **${server["pruned to 1 px"].p50.toFixed(0)} ms** (${server["pruned to 1 px"].bytes} bytes, ${frames} frames drawn)`);
console.log(`- the same without pruning: p50 ${server.unpruned.p50.toFixed(0)} ms (${server.unpruned.bytes} bytes)`);
console.log(`- browser, inline the SVG + inferno's script + layout: p50 **${median(inBrowser).toFixed(0)} ms**`);
console.log(`- whole page, navigation to an interactive graph (labels, timeline, graph): p50 **${median(whole).toFixed(0)} ms**`);
console.log(`- server + browser for the graph: **${(server["pruned to 1 px"].p50 + median(inBrowser)).toFixed(0)} ms** (goal < 1,000 ms)`);
