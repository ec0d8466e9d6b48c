"""`hahooks drill`: a two-node sandbox cluster on one machine (namespaces, simulated
HAST/gmirror/ggate/DRBD, real zfs-fuse, ext4, MariaDB, nginx), the failover drill, and the
reliability figures (fault matrix, flap storm, lost writes, bad input). See docs/drill.md.

Nothing here is imported by the hooks: only `hahooks drill`, bench/ and the tests use it.
"""
