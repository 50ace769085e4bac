"""StockTracker Live: real-time market quotes over WebSocket and long-poll."""
