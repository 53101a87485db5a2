"""The allowlist: job definitions, their typed parameters, argv rendering, and the loader."""
