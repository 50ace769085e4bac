"""HTTP and WebSocket endpoints: pages, API, long-poll, the WebSocket endpoint, watchlist."""
