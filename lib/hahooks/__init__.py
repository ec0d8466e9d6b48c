"""hahooks: failover hooks for two-node high-availability storage clusters.

Nothing here imports heavy modules or configures logging: hooks start on every
CARP/VRRP event, so start-up cost matters (see docs/architecture.md).
"""

__version__ = "0.1.0"
