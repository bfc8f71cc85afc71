from hpclaunch.cli.main import main

main()
