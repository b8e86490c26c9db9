// Uploads 16 MiB to URL with one Node.js HTTP client and prints what it saw:
// the status code, or "error: <message>". Used by tests/client_matrix.rs.
//
//     node upload.mjs fetch|http.request URL
import http from "node:http";

const body = Buffer.alloc(16 << 20, "u");
const [client, url] = process.argv.slice(2);

function viaRequest() {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "content-length": body.length } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
      res.on("error", reject);
    });
    req.setTimeout(30000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

async function viaFetch() {
  const res = await fetch(url, { method: "POST", body, signal: AbortSignal.timeout(30000) });
  await res.arrayBuffer();
  return res.status;
}

try {
  console.log(await (client === "fetch" ? viaFetch() : viaRequest()));
} catch (e) {
  const cause = e.cause ? ` (${e.cause.code || e.cause.message})` : "";
  console.log(`error: ${e.code || e.message}${cause}`.slice(0, 200));
}
