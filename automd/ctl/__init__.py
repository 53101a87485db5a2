"""automctl: the command-line client. Stdlib only (plus automd.api.codes) so it starts fast."""
