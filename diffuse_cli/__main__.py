from diffuse_cli.cli import main

main()
