from meterd.cli import main

main()
