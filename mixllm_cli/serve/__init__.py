"""`mixllm serve`: the router over HTTP (FastAPI on uvicorn)."""
