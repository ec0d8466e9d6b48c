"""The lab: the simulator of the FreeBSD tools and DRBD's kernel side (`hahooks.lab.sim`),
sandbox nodes out of Linux namespaces (`hahooks.lab.sandbox`) and the failover drill
(`hahooks.lab.drill`). Development and test code only: no production module imports it,
and the production wheel leaves it out (docs/architecture.md, docs/simulator.md)."""
