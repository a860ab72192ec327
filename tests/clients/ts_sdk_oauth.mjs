// A native MCP app built on the official TypeScript SDK, signing in to an OAuth-protected MCP server
// the way the SDK's own examples do: an OAuthClientProvider kept in memory, a loopback redirect URI on
// a port of its own (RFC 8252 §7.3), application_type "native", no client secret.
//
//   node ts_sdk_oauth.mjs <mcp-url> --package sdk|client [--era legacy|modern] [--metadata-url URL]
//                         [--step-up yes]
//
// --package sdk     @modelcontextprotocol/sdk 1.x: Client + StreamableHTTPClientTransport, finishAuth(code)
// --package client  @modelcontextprotocol/client 2.x: the same, finishAuth(URLSearchParams), which checks
//                   the authorization response's `iss` (RFC 9207) against the server's metadata itself
// --era             client 2.x only: "legacy" (initialize, its default) or "modern" (pinned to 2026-07-28,
//                   server/discover)
// --metadata-url    a Client ID Metadata Document (https) to offer as client_id instead of registering;
//                   it must list this app's redirect URI (a port-less loopback one matches any port)
// --step-up yes     after reading, call update_account (a write): the server answers 403
//                   insufficient_scope, the SDK authorizes again for more, the call is repeated
//
// The packages are found in $POGGIO_NODE_MODULES (build/node/node_modules), by their package.json
// "exports" ("import" condition), since this file does not live beside them.
//
// What it does, one JSON object per line on stdout (stderr is for diagnostics):
//   {"event":"listening","redirect_uri":...}      its loopback callback server is up
//   {"event":"register","body":{...}}              the registration request it sent (RFC 7591)
//   {"event":"registered","client":{...}}          what the SDK kept of the registration response
//   {"event":"authorize","url":...}                open this URL in a browser: the person signs in and approves
//   {"event":"callback","params":{...}}            what the browser brought back to the redirect URI
//   {"event":"token","fields":[...],"status":200}  a token request: its form's field names, the answer's status
//   {"event":"connected","protocol_version":...,"server":{...}}
//   {"event":"tools","names":[...]}
//   {"event":"called","result":{...}}              tools/call get_account {"domain": "example.com"}
//   {"event":"authorize",...} {"event":"callback",...} {"event":"token",...}   again, for the step-up
//   {"event":"changed","result":{...}}             tools/call update_account, after the step-up
//   {"event":"refused","message":...}              or the SDK gave up on the 403 without asking again
//   {"event":"done"}                               exit 0
//   {"event":"error","message":...}                exit 1
import { readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const CALLBACK_PATH = "/callback";
const WAIT_FOR_SIGN_IN_MS = 120_000;

function say(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function parseArgs(argv) {
  const [url, ...rest] = argv;
  const options = { url, package: "sdk", era: "legacy", "metadata-url": "", "step-up": "no" };
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i].replace(/^--/, "");
    if (!(name in options) || rest[i + 1] === undefined) throw new Error(`unknown or incomplete option ${rest[i]}`);
    options[name] = rest[i + 1];
  }
  if (!url) throw new Error("usage: ts_sdk_oauth.mjs <mcp-url> --package sdk|client [--era legacy|modern]");
  if (!["sdk", "client"].includes(options.package)) throw new Error(`--package must be sdk or client`);
  if (!["legacy", "modern"].includes(options.era)) throw new Error(`--era must be legacy or modern`);
  if (options.package === "sdk" && options.era !== "legacy") throw new Error("the 1.x SDK speaks the legacy era only");
  return options;
}

/** Import `<name><subpath>` from $POGGIO_NODE_MODULES as Node would from a file beside it. */
async function importPackage(name, subpath = ".") {
  const root = join(process.env.POGGIO_NODE_MODULES ?? "", name);
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const exports = manifest.exports ?? {};
  let target = exports[subpath];
  if (target === undefined) { // a subpath pattern such as "./*": {"import": "./dist/esm/*"}
    const pattern = Object.keys(exports).find((k) => k.endsWith("*") && subpath.startsWith(k.slice(0, -1)));
    const rest = pattern && subpath.slice(pattern.length - 1);
    target = pattern && JSON.parse(JSON.stringify(exports[pattern]).replaceAll("*", rest));
  }
  if (target && typeof target === "object") target = target.import ?? target.default;
  if (target && typeof target === "object") target = target.default;
  if (typeof target !== "string") throw new Error(`${name} exports no ESM entry for ${subpath}`);
  return import(pathToFileURL(join(root, target)).href);
}

async function loadSdk(pkg) {
  if (pkg === "client") {
    const m = await importPackage("@modelcontextprotocol/client");
    return { Client: m.Client, Transport: m.StreamableHTTPClientTransport, UnauthorizedError: m.UnauthorizedError };
  }
  const client = await importPackage("@modelcontextprotocol/sdk", "./client/index.js");
  const transport = await importPackage("@modelcontextprotocol/sdk", "./client/streamableHttp.js");
  const auth = await importPackage("@modelcontextprotocol/sdk", "./client/auth.js");
  return { Client: client.Client, Transport: transport.StreamableHTTPClientTransport,
           UnauthorizedError: auth.UnauthorizedError };
}

/** The app's loopback redirect URI: an HTTP server on 127.0.0.1, on a port the system picks.
 * ``next()`` is the query of the next request to it, in order of arrival. */
function startCallbackServer() {
  const arrived = [];
  const waiting = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    if (url.pathname !== CALLBACK_PATH) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" })
      .end("<!doctype html><title>Signed in</title><p>You can close this window.</p>");
    if (waiting.length) waiting.shift()(url.searchParams);
    else arrived.push(url.searchParams);
  });
  const next = () => Promise.race([
    arrived.length ? Promise.resolve(arrived.shift()) : new Promise((resolve) => waiting.push(resolve)),
    new Promise((_, reject) => setTimeout(() => reject(new Error("no sign-in within the time allowed")),
                                          WAIT_FOR_SIGN_IN_MS).unref()),
  ]);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const redirectUri = `http://127.0.0.1:${server.address().port}${CALLBACK_PATH}`;
      resolve({ server, redirectUri, next });
    });
  });
}

/** OAuthClientProvider (the same interface in 1.x and 2.x), everything in memory. */
class MemoryProvider {
  constructor(redirectUri, metadataUrl, onAuthorize) {
    this._redirectUri = redirectUri;
    if (metadataUrl) this.clientMetadataUrl = metadataUrl;
    this._onAuthorize = onAuthorize;
  }

  get redirectUrl() { return this._redirectUri; }

  get clientMetadata() {
    return {
      client_name: "Poggio test: TypeScript SDK",
      redirect_uris: [this._redirectUri],
      application_type: "native",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }

  state() {
    this.lastState = crypto.randomUUID();
    return this.lastState;
  }
  clientInformation() { return this._client; }
  saveClientInformation(info) {
    this._client = info;
    say("registered", { client: info });
  }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; }
  saveCodeVerifier(verifier) { this._verifier = verifier; }
  codeVerifier() {
    if (!this._verifier) throw new Error("no code verifier saved");
    return this._verifier;
  }
  redirectToAuthorization(url) { this._onAuthorize(url); }
}

/** fetch, telling what the OAuth requests carry (the registration body; the token form's field names). */
async function watchingFetch(input, init) {
  const response = await fetch(input, init);
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (init?.method === "POST" && url.pathname.endsWith("/register")) {
    say("register", { body: JSON.parse(init.body) });
  } else if (init?.method === "POST" && url.pathname.endsWith("/token")) {
    say("token", { fields: [...new URLSearchParams(String(init.body)).keys()].sort(), status: response.status });
  }
  return response;
}

function newTransport(sdk, options, provider) {
  return new sdk.Transport(new URL(options.url), { authProvider: provider, fetch: watchingFetch });
}

function newClient(sdk, options) {
  const clientOptions = options.package === "client"
    ? { versionNegotiation: { mode: options.era === "modern" ? { pin: "2026-07-28" } : "legacy" } }
    : {};
  return new sdk.Client({ name: "poggio-ts-sdk-oauth", version: "1.0.0" }, clientOptions);
}

/** Wait for the person's answer on the redirect URI, check it, and redeem the code on ``transport``. */
async function finishSignIn(options, provider, callback, transport) {
  const params = await callback.next();
  say("callback", { params: Object.fromEntries(params) });
  if (params.get("state") !== provider.lastState) throw new Error(`state mismatch: ${params.get("state")}`);
  if (params.get("error")) throw new Error(`authorization refused: ${params.get("error")}`);
  if (options.package === "client") await transport.finishAuth(params); // checks iss itself
  else await transport.finishAuth(params.get("code"));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const sdk = await loadSdk(options.package);
  const callback = await startCallbackServer();
  say("listening", { redirect_uri: callback.redirectUri });
  let authorizations = 0;
  const provider = new MemoryProvider(callback.redirectUri, options["metadata-url"], (url) => {
    authorizations += 1;
    say("authorize", { url: url.href });
  });

  try {
    // First connection: no tokens, so the server answers 401; the SDK discovers the authorization
    // server, registers (or offers its metadata document), and hands over the authorization URL.
    const first = newTransport(sdk, options, provider);
    let connected = false;
    try {
      await newClient(sdk, options).connect(first);
      connected = true;
    } catch (error) {
      if (!(error instanceof sdk.UnauthorizedError) || authorizations !== 1) throw error;
    }
    if (connected) throw new Error("the server let an unauthenticated client connect");
    // On the transport whose 401 started the flow (it keeps the challenge's resource metadata URL).
    await finishSignIn(options, provider, callback, first);

    const client = newClient(sdk, options);
    await client.connect(newTransport(sdk, options, provider));
    say("connected", {
      protocol_version: client.getNegotiatedProtocolVersion?.() ?? client.transport?.protocolVersion,
      era: client.getProtocolEra?.(),
      server: client.getServerVersion(),
    });
    const listed = await client.listTools();
    say("tools", { names: listed.tools.map((t) => t.name) });
    const result = await client.callTool({ name: "get_account", arguments: { domain: "example.com" } });
    say("called", { result });

    if (options["step-up"] === "yes") {
      const change = { name: "update_account", arguments: { domain: "example.com", employees: 4321 } };
      let stepped = false;
      try {
        await client.callTool(change);
        throw new Error("a write went through on a read-only grant");
      } catch (error) {
        if (error instanceof sdk.UnauthorizedError && authorizations === 2) stepped = true;
        else if (error?.message?.includes("403")) say("refused", { message: error.message }); // no step-up
        else throw error;
      }
      if (stepped) {
        await finishSignIn(options, provider, callback, client.transport);
        say("changed", { result: await client.callTool(change) });
      }
    }
    await client.close();
    say("done");
  } finally {
    callback.server.close();
  }
}

main().then(() => process.exit(0), (error) => {
  say("error", { message: String(error?.message ?? error), name: error?.name, stack: error?.stack });
  process.exit(1);
});
