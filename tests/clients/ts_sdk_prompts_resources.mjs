// An app on the official TypeScript SDK using a server's prompts, completions and resources with an API
// token (a static "Authorization: Bearer" header, no OAuth), through the SDK's own Client methods.
//
//   POGGIO_TOKEN=pgo_... node ts_sdk_prompts_resources.mjs <mcp-url> --package sdk|client [--era legacy|modern] \
//       '<plan JSON>'
//
// --package sdk     @modelcontextprotocol/sdk 1.x: Client + StreamableHTTPClientTransport (legacy era only)
// --package client  @modelcontextprotocol/client 2.x
// --era             client 2.x only: "legacy" (initialize) or "modern" (pinned to 2026-07-28, server/discover)
// plan              a JSON list of [method, params] pairs, method one of the Client's listPrompts, getPrompt,
//                   complete, listResources, listResourceTemplates, readResource; called in order
//
// The packages are found in $POGGIO_NODE_MODULES (build/node/node_modules), as ts_sdk_oauth.mjs does.
// Prints one JSON object on stdout and exits 0:
//   {"connected": {"protocol_version", "era", "server"}, "results": [{"result": ...} | {"error": {...}}, ...]}
// A request the server refuses is an {"error": {"code", "message"}} in its place; anything else fails with
// {"fatal": message} on stdout and exit 1. The 2.x client hands a resource-not-found error over as its
// ResourceNotFoundError with code -32602 in every era, also when the wire said -32002 (2025-11-25's code):
// the error's "resource_not_found" says whether it did.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const METHODS = ["listPrompts", "getPrompt", "complete", "listResources", "listResourceTemplates", "readResource"];

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
    return { Client: m.Client, Transport: m.StreamableHTTPClientTransport, NotFound: m.ResourceNotFoundError };
  }
  const client = await importPackage("@modelcontextprotocol/sdk", "./client/index.js");
  const transport = await importPackage("@modelcontextprotocol/sdk", "./client/streamableHttp.js");
  return { Client: client.Client, Transport: transport.StreamableHTTPClientTransport };
}

function parseArgs(argv) {
  const [url, ...rest] = argv;
  const plan = JSON.parse(rest.pop() ?? "null");
  const options = { url, package: "sdk", era: "legacy", plan };
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i].replace(/^--/, "");
    if (!["package", "era"].includes(name) || rest[i + 1] === undefined) throw new Error(`bad option ${rest[i]}`);
    options[name] = rest[i + 1];
  }
  if (!url || !Array.isArray(plan)) throw new Error("usage: ts_sdk_prompts_resources.mjs <url> [options] <plan>");
  if (!["sdk", "client"].includes(options.package)) throw new Error("--package must be sdk or client");
  if (!["legacy", "modern"].includes(options.era)) throw new Error("--era must be legacy or modern");
  if (options.package === "sdk" && options.era !== "legacy") throw new Error("the 1.x SDK speaks the legacy era only");
  for (const [method] of plan) if (!METHODS.includes(method)) throw new Error(`unknown method ${method}`);
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const sdk = await loadSdk(options.package);
  const token = process.env.POGGIO_TOKEN;
  if (!token) throw new Error("POGGIO_TOKEN is not set");
  const transport = new sdk.Transport(new URL(options.url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const clientOptions = options.package === "client"
    ? { versionNegotiation: { mode: options.era === "modern" ? { pin: "2026-07-28" } : "legacy" } }
    : {};
  const client = new sdk.Client({ name: "poggio-ts-sdk-prompts", version: "1.0.0" }, clientOptions);
  await client.connect(transport);
  const out = {
    connected: {
      protocol_version: client.getNegotiatedProtocolVersion?.() ?? client.transport?.protocolVersion,
      era: client.getProtocolEra?.(),
      server: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
    },
    results: [],
  };
  for (const [method, params] of options.plan) {
    try {
      out.results.push({ result: await client[method](params ?? undefined) });
    } catch (error) {
      if (typeof error?.code !== "number") throw error; // not a protocol error: the app itself failed
      out.results.push({
        error: {
          code: error.code,
          message: String(error.message),
          data: error.data,
          // 2.x only: its typed "resource not found", which it makes of -32002 and of -32602 with data.uri
          resource_not_found: sdk.NotFound ? error instanceof sdk.NotFound : undefined,
        },
      });
    }
  }
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().then(() => process.exit(0), (error) => {
  process.stdout.write(JSON.stringify({ fatal: String(error?.message ?? error), stack: error?.stack }) + "\n");
  process.exit(1);
});
