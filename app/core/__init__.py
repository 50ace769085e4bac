"""The live core: subscriptions, fan-out, outboxes, waits, snapshots, status, drain.

Transport-free: nothing here imports Starlette, uvicorn, `app.ws` or `app.endpoints`
(tests/unit/test_layout.py checks it).
"""
