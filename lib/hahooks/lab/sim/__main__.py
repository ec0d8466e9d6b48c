from hahooks.lab.sim.main import main

main()
