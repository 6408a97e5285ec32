from purposeguard.cli import run

run()
