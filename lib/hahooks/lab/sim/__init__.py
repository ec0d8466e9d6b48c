"""hahooks.lab.sim: simulated FreeBSD HA tools (hastctl/hastd, gmirror, ggatec/ggated, mdconfig,
sysctl net.inet.carp.*) and DRBD (drbdadm/drbdsetup) over one shared world directory.

`from hahooks.lab.sim import World` is the Python API (world.py); the tools run as processes
through launchers in <world>/bin (main.py). See docs/simulator.md.
"""


def __getattr__(name):
    # lazy: the simulated commands import hahooks.lab.sim.main and must not pay for world.py
    if name == "World":
        from hahooks.lab.sim.world import World
        return World
    raise AttributeError(name)


__all__ = ["World"]
