from taskyard.cli import main

main()
