from verticals.cli import main

main()
