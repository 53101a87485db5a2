"""The wire contract shared by the daemon and automctl; imports nothing else from automd."""
