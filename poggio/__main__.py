from poggio.cli import main

main()
