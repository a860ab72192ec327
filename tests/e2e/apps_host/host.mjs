// A minimal MCP Apps host for the app-view tests: the MCP TypeScript SDK's client talks to a real
// Poggio server, and the MCP Apps SDK's AppBridge (@modelcontextprotocol/ext-apps/app-bridge) drives
// the view in a sandboxed iframe, as Claude or VS Code do. Bundled for the browser by rolldown at test time.
import { AppBridge, PostMessageTransport, getToolUiResourceUri } from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

async function connect(url, token) {
  const client = new Client({ name: "poggio-apps-test-host", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
  );
  return client;
}

// What a host gets when it reads a view: null, or the protocol error's code and message.
async function readView({ url, token, uri }) {
  const client = await connect(url, token);
  try {
    await client.readResource({ uri });
    return null;
  } catch (e) {
    return { code: e.code, message: e.message };
  }
}

async function showTool({ url, token, tool, args }) {
  const client = await connect(url, token);
  const { tools } = await client.listTools();
  const described = tools.find((t) => t.name === tool);
  const uri = getToolUiResourceUri(described);
  const resource = await client.readResource({ uri });
  const view = resource.contents[0];
  const result = await client.callTool({ name: tool, arguments: args });

  const iframe = document.createElement("iframe");
  iframe.id = "view";
  iframe.setAttribute("sandbox", "allow-scripts"); // no same origin: the view reaches nothing of the host
  iframe.style.cssText = "width: 560px; height: 520px; border: 1px solid #ccd";
  document.body.append(iframe);
  const bridge = new AppBridge(client, { name: "poggio-apps-test-host", version: "1.0.0" }, { serverResources: {} });
  const initialized = new Promise((resolve) => (bridge.oninitialized = resolve));
  // the bridge listens before the view loads: the view sends ui/initialize as soon as it runs
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = view.text;
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  await bridge.sendToolResult(result);
  return { uri, mimeType: view.mimeType, csp: view._meta?.ui?.csp ?? null };
}

window.showTool = showTool;
window.readView = readView;
