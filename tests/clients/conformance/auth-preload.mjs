// Adds `Authorization: Bearer $POGGIO_TOKEN` to the conformance suite's HTTP requests.
//
// Use: NODE_OPTIONS="--import=/abs/path/auth-preload.mjs" POGGIO_TOKEN=... \
//      [POGGIO_TARGET_URL=http://127.0.0.1:PORT/mcp] conformance server --url ...
//
// @modelcontextprotocol/conformance (0.1.16) sends no credentials. Its requests leave through two
// different HTTP stacks:
//   * Node's built-in fetch (the TS SDK's StreamableHTTPClientTransport, and the raw SSE requests of
//     server-sse-polling), which runs on the undici copy bundled inside Node;
//   * `request` imported from the `undici` npm package (dns-rebinding-protection), a second copy.
// Both copies publish every outgoing request on the `undici:request:create` diagnostics channel
// before it is written, and both offer `request.addHeader()` for exactly this purpose. Subscribing
// here therefore covers both stacks, without wrapping globalThis.fetch or touching module
// resolution, and whatever version of undici the suite pulls in.
//
// Only requests to POGGIO_TARGET_URL's origin (scheme://host:port) get the header, when it is set;
// a request that already carries an Authorization header is left alone.
import diagnosticsChannel from "node:diagnostics_channel";

const token = process.env.POGGIO_TOKEN;
const debug = Boolean(process.env.POGGIO_PRELOAD_DEBUG);

function originOf(value) {
  try {
    return new URL(String(value)).origin;
  } catch {
    return null;
  }
}

const target = process.env.POGGIO_TARGET_URL ? originOf(process.env.POGGIO_TARGET_URL) : null;

// undici 6 (inside Node 22) keeps request.headers as one "name: value\r\n..." string;
// undici 7+ keeps a flat [name, value, name, value, ...] array.
function hasAuthorization(headers) {
  if (typeof headers === "string") return /(^|\r\n)authorization:/i.test(headers);
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === "authorization") return true;
    }
  }
  return false;
}

if (!token) {
  process.stderr.write("[poggio auth-preload] POGGIO_TOKEN is not set: requests go out without Authorization\n");
} else {
  diagnosticsChannel.subscribe("undici:request:create", ({ request }) => {
    if (target && originOf(request.origin) !== target) return;
    if (hasAuthorization(request.headers)) return;
    request.addHeader("authorization", `Bearer ${token}`);
    if (debug) {
      process.stderr.write(`[poggio auth-preload] ${request.method} ${request.origin}${request.path}\n`);
    }
  });
}
