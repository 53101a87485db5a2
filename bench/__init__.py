"""Benchmarks of automd's API hot paths against a plain FastAPI reference server."""
