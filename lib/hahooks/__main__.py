from hahooks.cli import run

run()
