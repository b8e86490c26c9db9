// Drives a real browser (Debian's Firefox ESR or Chromium, headless, through
// puppeteer-core) against the pages of the test's loopback servers: on each
// page it uploads 16 MiB, by fetch and by XMLHttpRequest, to a route that
// answers 413 without reading the body, and prints what the page saw, a line
// a trial: `<page url> fetch|xhr <status code, or the browser's error>`.
//
//     node browser.mjs firefox|chrome EXECUTABLE TRIALS URL...
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

const [kind, executablePath, trials, ...urls] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "linger-browser-"));
const chromeArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const browser = await puppeteer.launch({
  browser: kind,
  executablePath,
  headless: true,
  userDataDir: profile,
  args: kind === "chrome" ? chromeArgs : [],
  // Loopback only: no proxy, no update or telemetry traffic.
  extraPrefsFirefox: {
    "network.proxy.type": 0,
    "app.update.enabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.enabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
  },
  protocolTimeout: 120_000,
});
try {
  for (const url of urls) {
    const page = await browser.newPage();
    await page.goto(url, { timeout: 30_000 });
    const seen = await page.evaluate(async (trials) => {
      const body = () => new Uint8Array(16 << 20);
      const fetchOnce = async () => {
        try {
          const res = await fetch("/reject/16", { method: "POST", body: body() });
          await res.arrayBuffer();
          return res.status;
        } catch (e) {
          return String(e && e.name ? `${e.name}: ${e.message}` : e);
        }
      };
      const xhrOnce = () =>
        new Promise((resolve) => {
          const xhr = new XMLHttpRequest();
          xhr.open("POST", "/reject/16");
          xhr.onload = () => resolve(xhr.status);
          xhr.onerror = () => resolve("XMLHttpRequest error");
          xhr.ontimeout = () => resolve("XMLHttpRequest timeout");
          xhr.timeout = 30_000;
          xhr.send(body());
        });
      const out = { fetch: [], xhr: [] };
      for (let i = 0; i < trials; i++) {
        out.fetch.push(await fetchOnce());
        out.xhr.push(await xhrOnce());
      }
      return out;
    }, Number(trials));
    await page.close();
    for (const api of ["fetch", "xhr"]) {
      for (const result of seen[api]) console.log(`${url} ${api} ${result}`);
    }
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
