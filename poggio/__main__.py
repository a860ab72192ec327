from poggio.commands.cli import main

main()
