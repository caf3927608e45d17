"""Settings modules: base (env-driven), local, test, production."""
