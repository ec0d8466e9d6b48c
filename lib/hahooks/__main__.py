from hahooks.express import run

run()
