"""The tool-pack runtime and its API: the registry that loads packs through entry points, tools
and their context, write tools, search and paging, and the schema upgrade of the core and the packs."""
