"""The ``poggio`` command: its groups and subcommands, the pack scaffold, demo data, CSV import
and the supervisor of ``poggio up``. The top floor: it may import every other room."""
