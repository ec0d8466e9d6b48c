from hahooks.sim.main import main

main()
