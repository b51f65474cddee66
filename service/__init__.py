"""The ktsweep controller: sweep specs, search, scheduling on Ray, persistence, REST API, CLI."""
