"""automd: run allowlisted automation jobs as transient systemd units over JSON-RPC 2.0."""

__version__ = "0.1.0"
