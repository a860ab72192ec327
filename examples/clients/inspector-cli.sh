# MCP Inspector's CLI mode: list the tools of a Poggio MCP server with an API token.
# --header takes several values, so it comes last. tests/clients/node_tools.py runs this command.
npx @modelcontextprotocol/inspector --cli http://127.0.0.1:8001/mcp --transport http --method tools/list \
    --header "Authorization: Bearer pgo_..."
