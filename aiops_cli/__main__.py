from aiops_cli.main import main

main()
