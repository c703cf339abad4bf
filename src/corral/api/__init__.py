"""HTTP surface: thin FastAPI routers that parse, call the domain and render ARM's shapes."""
