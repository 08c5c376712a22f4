from regd.cli import main

main()
